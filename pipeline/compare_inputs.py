"""`pipeline compare`, its inputs: a fixed, seeded set of test samples, each written out as the files every model
is given (seg.png, sketch.png as the shards hold them; the caption as the prompt) and as the page shows them
(the photo, the segmentation coloured by the label map with a legend, the sketch)."""
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from annotators.labelmaps import IGNORE
from shardio.index import read_member
from shardio.layout import SHARD_RE
from shardio.shards import atomic_path

from .browse import Dataset, _hex

SPLIT = "test"  # the models never saw these samples
LEGEND_CLASSES = 8


class CompareError(ValueError):
    """A comparison that cannot be made as asked; the message names the param or file and what to do."""


@dataclass(frozen=True)
class Sample:
    """One test sample as written under `inputs/<key>/`: its files (None: the sample lacks that member), caption
    (None: no caption), the legend of its segmentation and the annotators that ran with random weights on it."""

    key: str
    folder: Path
    photo: Path
    seg: Path | None
    seg_colour: Path | None
    sketch: Path | None
    caption: str | None
    legend: list[tuple[str, str, float]]  # (class name, colour, share of the labelled pixels), largest first
    random_weights: list[str]

    def given(self, modality: str) -> Path | str | None:
        """What the sample gives a model for a generator modality (text: the caption)."""
        return {"text": self.caption, "seg": self.seg, "sketch": self.sketch}[modality]


def pick(dataset: Dataset, count: int, seed: int, keys: list[str]) -> list[tuple[str, object]]:
    """(shard, index entry) of the test samples `keys` in that order, else of `count` drawn uniformly with `seed`
    (all of them when there are fewer), in shard order; a key not in the test split is a CompareError."""
    shards = [name for name in dataset.stats if SHARD_RE.match(name)["split"] == SPLIT]
    if not shards:
        raise CompareError(f"{dataset.layout.shards}: no {SPLIT} shards; the comparison shows test samples "
                           f"(the profile's test_size decides how many there are)")
    if keys:
        found = {e.key: (shard, e) for shard in shards for e in dataset.index(shard)[0] if e.key in keys}
        missing = [k for k in keys if k not in found]
        if missing:
            raise CompareError(f"compare.keys: {', '.join(missing)} not in the {SPLIT} split of "
                               f"{dataset.layout.dataset}; list test keys (`pipeline browse`, split test) or leave "
                               f"compare.keys empty to draw compare.samples of them")
        return [found[k] for k in keys]
    total = sum(dataset.stats[s]["samples"] for s in shards)
    chosen = set(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False).tolist())
    entries = [(shard, e) for shard in shards for e in dataset.index(shard)[0]]
    return [entry for i, entry in enumerate(entries) if i in chosen]


def _legend(labels, seg: np.ndarray) -> list[tuple[str, str, float]]:
    ids, area = np.unique(seg[seg != IGNORE], return_counts=True)
    order = np.argsort(-area, kind="stable")[:LEGEND_CLASSES]
    total = max(1, int(area.sum()))
    return [(labels.names[i], _hex(labels.colours[i]), round(int(a) / total, 3))
            for i, a in zip(ids[order], area[order]) if i < labels.num_classes]


def _write(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_inputs(dataset: Dataset, picked: list[tuple[str, object]], out: Path) -> list[Sample]:
    """Write each picked sample's files under out/<key>/ (members byte for byte, plus the coloured segmentation);
    returns them as Samples."""
    samples = []
    for shard, entry in picked:
        path, folder = dataset.layout.shards / shard, Path(out) / entry.key
        record = dataset.record(shard, entry)

        def member(ext, name):
            return _write(folder / name, read_member(path, entry.members[ext])) if ext in entry.members else None

        seg = member("seg.png", "seg.png")
        legend, colour = [], None
        if seg is not None:
            labels = cv2.imread(str(seg), cv2.IMREAD_UNCHANGED)
            colour = _write(folder / "seg-colour.png",
                            cv2.imencode(".png", dataset.labels.colourise(labels)[..., ::-1])[1].tobytes())
            legend = _legend(dataset.labels, labels)
        samples.append(Sample(entry.key, folder, member("jpg", "photo.jpg"), seg, colour,
                              member("sketch.png", "sketch.png"),
                              record["captions"][0] if record["captions"] else None, legend,
                              record["random_weights"]))
    return samples
