"""Mappings between label maps (package data `labelmaps/mappings/<from>--<to>.csv`: from_id, from_name, to_id,
to_name; to_id 255 = ignore), applied as a 256-entry lookup table. No class may map to an id the target dataset never
annotates: a model trained on it could never predict that id, and it would count as a class of its own."""
import csv
from functools import cache
from importlib import resources

import numpy as np

from ..labelmaps import IGNORE, load_label_map


def available() -> list[tuple[str, str]]:
    """(from, to) pairs of the shipped mappings."""
    files = resources.files("annotators.labelmaps") / "mappings"
    return sorted(tuple(p.name[:-4].split("--")) for p in files.iterdir() if p.name.endswith(".csv"))


@cache
def label_mapping(source: str, target: str) -> np.ndarray:
    """uint8 lookup [256] taking class ids of label map `source` to `target` (unmapped and 255 -> 255)."""
    if source == target:
        return np.arange(256, dtype=np.uint8)
    path = resources.files("annotators.labelmaps") / "mappings" / f"{source}--{target}.csv"
    if not path.is_file():
        raise KeyError(f"no mapping from label map {source!r} to {target!r}; available: {available()}")
    src, dst = load_label_map(source), load_label_map(target)
    table = np.full(256, IGNORE, np.uint8)
    with path.open() as f:
        for row in csv.DictReader(f):
            frm, to = int(row["from_id"]), int(row["to_id"])
            if src.names[frm] != row["from_name"] or (to != IGNORE and dst.names[to] != row["to_name"]):
                raise ValueError(f"mapping {path.name}: row {row} disagrees with the label maps' names")
            if to in dst.unannotated:
                raise ValueError(f"mapping {path.name}: row {row} maps to an id {target!r} never annotates; "
                                 f"map it to another class or to 255 (ignore)")
            table[frm] = to
    return table
