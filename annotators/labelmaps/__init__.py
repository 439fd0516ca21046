"""Label maps as package data: `<name>.csv` with columns id, name, r, g, b and optionally `annotated` (0 for an id
the dataset reserves but never labels, e.g. COCO-Stuff's 11 thing classes removed from COCO). 255 means ignore."""
import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

IGNORE = 255


@dataclass(frozen=True)
class LabelMap:
    """Class ids, names and display colours of one label set."""

    name: str
    names: tuple[str, ...]
    colours: np.ndarray  # [num_classes, 3] uint8
    unannotated: frozenset[int] = frozenset()  # ids no image of the dataset is labelled with

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def id(self, class_name: str) -> int:
        """The class id of a class name; unknown names raise KeyError naming the label map."""
        try:
            return self.names.index(class_name)
        except ValueError:
            raise KeyError(f"label map {self.name!r} has no class {class_name!r}") from None

    def colourise(self, labels: np.ndarray) -> np.ndarray:
        """An RGB picture of a class-id map; ignored pixels are black."""
        palette = np.zeros((256, 3), np.uint8)
        palette[: self.num_classes] = self.colours
        return palette[labels]


def available() -> list[str]:
    """Names of the label maps shipped with the package."""
    return sorted(p.name[:-4] for p in resources.files(__package__).iterdir() if p.name.endswith(".csv"))


@cache
def load_label_map(name: str) -> LabelMap:
    """The label map `name`; an unknown name raises KeyError listing the available ones."""
    path = resources.files(__package__) / f"{name}.csv"
    if not path.is_file():
        raise KeyError(f"unknown label map {name!r}; available: {', '.join(available())}")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if [int(r["id"]) for r in rows] != list(range(len(rows))):
        raise ValueError(f"label map {name!r}: ids must run 0..{len(rows) - 1} in order")
    colours = np.array([[int(r["r"]), int(r["g"]), int(r["b"])] for r in rows], np.uint8)
    unannotated = frozenset(int(r["id"]) for r in rows if r.get("annotated", "1") == "0")
    return LabelMap(name, tuple(r["name"] for r in rows), colours, unannotated)
