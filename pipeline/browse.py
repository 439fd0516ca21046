"""`pipeline browse`, the data side: a packed dataset as the browser page sees it — sample records, filters and
pages — read through each training shard's byte-offset index (shardio/index.py), never by scanning the dataset.

A page touches only what it shows: which shards can hold matches comes from the shards' stats files (pack counts
per shard its splits, modalities present and images per class), the index of each shard the page reaches is
loaded (built once from the tar headers, with each sample's classes and pixel shares from the class counts pack
wrote beside the shard, then cached beside it), and every shown member is read with one seek. Only a filter the
stats cannot count exactly (a class together with a missing modality, or a minimum pixel share) counts its
matches in the indexes of the shards that may hold some.
"""
import functools
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq

from annotators.labelmaps import IGNORE, load_label_map
from annotators.weights import made_with_random_weights, random_weight_annotators

from shardio.index import IndexEntry, load_index, read_member
from shardio.layout import SHARD_RE, Layout
from shardio.modalities import MEMBER_OF
from shardio.shards import class_counts, read_stats

from .pack import read_classes

INDEX_TAG = "browse-classes/1"  # what `_describe` stores per sample; bump when it changes
MEDIA = ("jpg", "seg.png", "sketch.png")  # members the page shows as pictures
OVERLAY = "seg-overlay.png"  # the segmentation coloured by the label map, ignored pixels transparent
MAX_PAGE = 200
CACHED_INDEXES = 64  # shard indexes kept in memory at once


@dataclass(frozen=True)
class Filters:
    """What a page asks for; None is no restriction. `missing` is a modality name of `shardio.modalities`."""

    split: str | None = None
    shard: str | None = None
    cls: int | None = None
    min_share: float = 0.0  # of the sample's labelled pixels, for `cls`
    missing: str | None = None


def _describe(key: str, read, recorded: list | None) -> dict:
    """What the index keeps per sample: [class id, share of labelled pixels] of each class present, largest first;
    from the class counts pack recorded for its seg.png (`recorded`), else by decoding the seg.png (a shard packed
    before pack recorded them)."""
    if recorded is None:
        try:
            png = read("seg.png")
        except KeyError:
            return {"classes": []}
        labels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        if labels is None or labels.dtype != np.uint8 or labels.ndim != 2:
            raise ValueError(f"{key}.seg.png is not a single-channel uint8 PNG")
        recorded = class_counts(labels)
    counts = [(i, n) for i, n in recorded if i != IGNORE]
    labelled = max(1, sum(n for _, n in counts))
    return {"classes": [[i, round(n / labelled, 5)] for i, n in sorted(counts, key=lambda c: (-c[1], c[0]))]}


class Dataset:
    """One packed dataset opened for browsing: its finished training shards, card and label map."""

    def __init__(self, layout: Layout):
        self.layout = layout
        if not layout.card_json.exists():
            raise FileNotFoundError(f"{layout.card_json}: missing; run `pipeline pack --dataset {layout.dataset}`")
        self.card = json.loads(layout.card_json.read_text())
        self.labels = load_label_map(self.card["label_map"])
        stats = {p.name: read_stats(p) for p in sorted(layout.shards.glob("*.tar")) if SHARD_RE.match(p.name)}
        self.stats = {name: s for name, s in stats.items() if s is not None}
        if not self.stats:
            raise FileNotFoundError(f"{layout.shards}: no finished training shards; run `pipeline pack`")
        self._indexes: OrderedDict[str, tuple[list[IndexEntry], dict[str, IndexEntry]]] = OrderedDict()
        self._counts: dict[tuple[str, Filters], int] = {}
        self._lock = threading.Lock()  # one index build at a time: concurrent page requests share its result
        self._rejects = None

    # -- what the page needs once -------------------------------------------------------------------------------
    def meta(self) -> dict:
        """Dataset name, shards, splits, classes (with colours and pixel shares), modalities, rejects, annotators."""
        colours = self.labels.colours
        return {
            "dataset": self.layout.dataset, "samples": self.card["samples"], "label_map": self.card["label_map"],
            "splits": self.card["splits"], "modalities": list(MEMBER_OF), "coverage": self.card["coverage"],
            "shards": [{"name": name, "split": SHARD_RE.match(name)["split"], "samples": s["samples"]}
                       for name, s in self.stats.items()],
            "classes": [{**c, "colour": _hex(colours[c["id"]]) if c["id"] < len(colours) else "#000000"}
                        for c in self.card["classes"]],
            "rejects": self.card.get("rejects", {}),
            "annotators": {name: {"metadata": meta, "random_weights": made_with_random_weights(meta)}
                           for name, meta in self.card["annotators"].items()},
        }

    def check(self, f: Filters) -> None:
        """Refuse a filter naming a shard, split, class or modality the dataset does not have (ValueError)."""
        if f.shard is not None and f.shard not in self.stats:
            raise ValueError(f"shard {f.shard!r}: not a training shard of {self.layout.dataset}")
        if f.split is not None and f.split not in self.card["splits"]:
            raise ValueError(f"split {f.split!r}: the dataset has {', '.join(self.card['splits'])}")
        if f.cls is not None and not 0 <= f.cls < self.labels.num_classes:
            raise ValueError(f"class {f.cls}: label map {self.labels.name!r} has ids 0..{self.labels.num_classes - 1}")
        if f.missing is not None and f.missing not in MEMBER_OF:
            raise ValueError(f"missing {f.missing!r}: modalities are {', '.join(MEMBER_OF)}")
        if not 0 <= f.min_share <= 1:
            raise ValueError(f"min_share {f.min_share}: a share of pixels, 0..1")

    # -- indexes and counts -------------------------------------------------------------------------------------
    def index(self, shard: str) -> tuple[list[IndexEntry], dict[str, IndexEntry]]:
        """The shard's index entries in file order and by key (built and cached beside the shard on first use)."""
        with self._lock:
            if shard not in self._indexes:
                path = self.layout.shards / shard
                recorded = functools.cache(lambda: read_classes(path, self.stats[shard].get("fingerprint")))
                entries = load_index(path, lambda key, read: _describe(key, read, recorded().get(key)), INDEX_TAG)
                self._indexes[shard] = (entries, {e.key: e for e in entries})
                while len(self._indexes) > CACHED_INDEXES:
                    self._indexes.popitem(last=False)
            self._indexes.move_to_end(shard)
            return self._indexes[shard]

    def _shards(self, f: Filters) -> list[str]:
        return [name for name in self.stats if (f.shard is None or name == f.shard)
                and (f.split is None or SHARD_RE.match(name)["split"] == f.split)]

    def _count(self, shard: str, f: Filters) -> int:
        """Matches in one shard: from its stats when they count it exactly (or rule it out), else its index."""
        s = self.stats[shard]
        bounds = [s["samples"]]
        if f.cls is not None:
            bounds.append(s["class_images"][f.cls])
        if f.missing is not None:
            bounds.append(s["samples"] - s["present"][f.missing])
        if min(bounds) == 0 or (len(bounds) <= 2 and f.min_share == 0):
            return min(bounds)
        if (shard, f) not in self._counts:
            self._counts[shard, f] = sum(map(lambda e: matches(e, f), self.index(shard)[0]))
        return self._counts[shard, f]

    # -- pages --------------------------------------------------------------------------------------------------
    def page(self, f: Filters, offset: int = 0, limit: int = 50) -> dict:
        """{"total", "offset", "samples": records} of the matches `offset`..`offset + limit` in shard order."""
        self.check(f)
        limit = max(0, min(limit, MAX_PAGE))
        counts = [(shard, self._count(shard, f)) for shard in self._shards(f)]
        records, skip = [], max(0, offset)
        for shard, n in counts:
            if len(records) >= limit:
                break
            if skip >= n:
                skip -= n
                continue
            hits = [e for e in self.index(shard)[0] if matches(e, f)]
            records += [self.record(shard, e) for e in hits[skip: skip + limit - len(records)]]
            skip = 0
        return {"total": sum(n for _, n in counts), "offset": offset, "samples": records}

    def record(self, shard: str, entry: IndexEntry) -> dict:
        """What the page shows of one sample: its pictures' URLs, classes, captions, JSON and random-weight marks."""
        path = self.layout.shards / shard
        info = json.loads(read_member(path, entry.members["json"])) if "json" in entry.members else {}
        captions = (read_member(path, entry.members["txt"]).decode().splitlines() if "txt" in entry.members else [])
        base = f"media/{shard.removesuffix('.tar')}/{entry.key}"
        media = {ext: f"{base}.{ext}" for ext in MEDIA if ext in entry.members}
        if "seg.png" in entry.members:
            media["overlay"] = f"{base}.{OVERLAY}"
        return {"key": entry.key, "shard": shard, "media": media, "captions": captions, "json": info,
                "classes": entry.info["classes"],
                "missing": [name for name, ext in MEMBER_OF.items() if ext not in entry.members],
                "random_weights": random_weight_annotators(info.get("annotators", {}))}

    def media(self, shard_stem: str, key: str, name: str) -> bytes:
        """The bytes of a picture the page shows (a member, or the coloured overlay); KeyError if there is none."""
        shard = f"{shard_stem}.tar"
        if shard not in self.stats or (name not in MEDIA and name != OVERLAY):
            raise KeyError(f"{shard_stem}/{key}.{name}")
        entry = self.index(shard)[1][key]
        data = read_member(self.layout.shards / shard, entry.members["seg.png" if name == OVERLAY else name])
        return self.overlay(data) if name == OVERLAY else data

    def overlay(self, seg_png: bytes) -> bytes:
        """The segmentation as an RGBA PNG in the label map's colours, ignored pixels transparent."""
        labels = cv2.imdecode(np.frombuffer(seg_png, np.uint8), cv2.IMREAD_UNCHANGED)
        rgba = np.dstack([self.labels.colourise(labels), np.where(labels == IGNORE, 0, 255).astype(np.uint8)])
        return cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))[1].tobytes()

    def reject_rows(self) -> list[dict]:
        """Every row of ingest's rejects.parquet ({source, reason, detail}; read once), [] without the file."""
        if self._rejects is None:
            path: Path = self.layout.rejects
            columns = ["source", "reason", "detail"]  # not ingest's hashes and stamps
            self._rejects = pq.read_table(path, columns=columns).to_pylist() if path.exists() else []
        return self._rejects

    def rejects(self, reason: str | None = None, offset: int = 0, limit: int = 50) -> dict:
        """{"total", "reasons", "rows"}: a page of ingest's rejects, optionally of one reason."""
        rows = [r for r in self.reject_rows() if reason is None or r["reason"] == reason]
        limit = max(0, min(limit, MAX_PAGE))
        return {"total": len(rows), "reasons": self.card.get("rejects", {}), "rows": rows[offset: offset + limit]}


def matches(entry: IndexEntry, f: Filters) -> bool:
    """Whether a sample passes the filter's per-sample criteria (class with its share, missing modality)."""
    if f.missing is not None and MEMBER_OF[f.missing] in entry.members:
        return False
    return f.cls is None or any(i == f.cls and share >= f.min_share for i, share in entry.info["classes"])


def _hex(colour) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in colour)
