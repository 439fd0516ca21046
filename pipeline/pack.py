"""`pipeline pack`: join each image shard with its aligned annotation shards into one training shard.

The bytes of every member are copied as they are (the JPEG from ingest, the PNG/NPY from annotate); only the
`json` member is new. Provided modalities (segmentation, sketch, captions) come from the image shard; the rest from the
annotation shards, which hold the image shard's keys in the same order (a key may be absent: provided by the
dataset, or failed in the annotator). A sample missing a modality is kept without it and counted.
"""
import json
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .annotate import image_fingerprint, image_shards
from shardio.layout import Layout
from shardio.shards import ShardError, fingerprint, is_done, keep_only, read_shard, read_stats, shard_writer, write_stats

# Members each annotator contributes to a training sample (DESIGN.md, "Training sample").
ANNOTATION_MEMBERS = {"seg": ("seg.png",), "sketch": ("sketch.png",), "clip": ("clip.npy", "clip_text.npy")}
# What the image shard may carry itself when the dataset provides it.
PROVIDED_MEMBERS = ("seg.png", "sketch.png", "txt")
# Modalities counted for coverage: one member each that says the modality is there.
COVERAGE = {"seg": "seg.png", "sketch": "sketch.png", "clip": "clip.npy", "txt": "txt", "clip_text": "clip_text.npy"}
CODE_VERSION = 2  # bump when the training-shard layout changes: every training shard is then redone


def annotation_stats(layout: Layout, annotator: str, image_shard: Path, image: str) -> dict:
    """The stats of the finished annotation shard made from `image_shard` as it is now (`image`: its fingerprint);
    a missing, unfinished or stale one is an error saying what to run."""
    path = layout.annotations(annotator) / image_shard.name
    stats = read_stats(path)
    rerun = f"run `pipeline annotate --only {annotator} --dataset {layout.dataset}`"
    if stats is None or not path.exists():
        raise FileNotFoundError(f"{path}: annotation shard missing or unfinished; {rerun}")
    if stats.get("image_fingerprint") != image:
        raise ValueError(f"{path}: annotation shard made from another version of image shard {image_shard} "
                         f"(it was ingested again since); {rerun}")
    return stats


class _AlignedReader:
    """Walks an annotation shard alongside its image shard: its keys must be a subsequence of the image keys."""

    def __init__(self, path: Path):
        self.path = path
        self._samples = read_shard(path)
        self._next = next(self._samples, None)

    def take(self, key: str) -> dict[str, bytes]:
        """The annotation members of `key`, or {} when this shard has none for it."""
        if self._next is None or self._next[0] != key:
            return {}
        members = self._next[1]
        self._next = next(self._samples, None)
        return members

    def check_consumed(self) -> None:
        if self._next is not None:
            raise ShardError(f"{self.path}: key {self._next[0]!r} is not in the image shard, or out of its order")


def class_histogram(seg_png: bytes) -> np.ndarray:
    """Pixel count of each class id 0..255 in a label-map PNG (decoded only to count, never re-encoded)."""
    labels = cv2.imdecode(np.frombuffer(seg_png, np.uint8), cv2.IMREAD_UNCHANGED)
    if labels is None or labels.dtype != np.uint8 or labels.ndim != 2:
        raise ValueError("seg.png is not a single-channel uint8 PNG")
    return cv2.calcHist([labels], [0], None, [256], [0, 256]).ravel().astype(np.int64)  # ~10x np.bincount


def pack_shard(image_shard: Path, annotations: dict[str, tuple[Path, dict]], out: Path, label_map: str,
               text: str) -> dict:
    """Write the training shard `out` from an image shard and {annotator: (annotation shard, its stats)};
    `text` is the dataset profile's pseudo-text (`captions` or `image`), recorded in every sample."""
    readers = {name: _AlignedReader(path) for name, (path, _) in annotations.items()}
    metadata = {name: stats.get("metadata", {}) for name, (_, stats) in annotations.items()}
    computed = {name: _computed_on(stats) for name, (_, stats) in annotations.items()}
    counts = {name: 0 for name in COVERAGE}
    pixels, images = np.zeros(256, np.int64), np.zeros(256, np.int64)
    samples, splits = 0, {}
    with shard_writer(out) as writer:
        for key, image in read_shard(image_shard):
            info = json.loads(image["json"])
            sample = {"__key__": key, "jpg": image["jpg"]}
            sample.update({ext: image[ext] for ext in PROVIDED_MEMBERS if ext in image})
            used = {}
            for name, reader in readers.items():
                members = {ext: data for ext, data in reader.take(key).items() if ext in ANNOTATION_MEMBERS[name]}
                fresh = {ext: data for ext, data in members.items() if ext not in sample}
                if fresh:
                    used[name] = {**metadata[name], "computed_on": computed[name]} if computed[name] else metadata[name]
                sample.update(fresh)
            sample["json"] = _sample_json(key, info, label_map, text, used)
            writer.write(sample)
            samples += 1
            splits[info["split"]] = splits.get(info["split"], 0) + 1
            for name, ext in COVERAGE.items():
                counts[name] += ext in sample
            if "seg.png" in sample:
                hist = class_histogram(sample["seg.png"])
                pixels += hist
                images += hist > 0
    for reader in readers.values():
        reader.check_consumed()
    return {"samples": samples, "splits": splits, "present": counts, "annotators": metadata, "computed_on": computed,
            "class_pixels": pixels.tolist(), "class_images": images.tolist()}


def _computed_on(stats: dict) -> dict:
    """The device, GPU model and precision annotate recorded for a shard ({} for one made before it did)."""
    worker = stats.get("worker", {})
    return {key: worker[key] for key in ("device", "gpu", "precision") if key in worker}


def _sample_json(key: str, info: dict, label_map: str, text: str, annotators: dict[str, dict]) -> bytes:
    record = {"key": key, "source": info.get("source"), "size": [info["width"], info["height"]],
              "split": info["split"], "label_map": label_map, "text": text, "provided": info.get("provided", []),
              "annotators": annotators}
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def plan(layout: Layout, params, profile) -> Iterator[tuple[Path, dict[str, tuple[Path, dict]], Path, str]]:
    """Per image shard: (image shard, its annotation shards with stats, training shard, fingerprint)."""
    names = [name for name in params.pack.modalities if name in profile.annotate]
    for image_shard in image_shards(layout):
        image = image_fingerprint(image_shard)
        annotations = {name: (layout.annotations(name) / image_shard.name,
                              annotation_stats(layout, name, image_shard, image)) for name in names}
        fp = fingerprint("pack", CODE_VERSION, params.pack.model_dump(exclude={"workers"}), profile.label_map,
                         profile.text, image, {name: stats["fingerprint"] for name, (_, stats) in annotations.items()})
        yield image_shard, annotations, layout.shards / image_shard.name, fp


def _pack_job(image_shard: Path, annotations: dict, out: Path, fp: str, label_map: str, text: str) -> int:
    stats = pack_shard(image_shard, annotations, out, label_map, text)
    write_stats(out, {"fingerprint": fp, "image_shard": image_shard.name, **stats})
    return stats["samples"]


def run(layout: Layout, params, profile, progress: bool = True) -> dict:
    """Pack every image shard not already packed under the same fingerprint, `pack.workers` processes at a
    time, and delete training shards no image shard makes any more; returns a summary."""
    for name in params.pack.modalities:
        if name not in ANNOTATION_MEMBERS:
            raise ValueError(f"pack.modalities: unknown modality {name!r}; known: {', '.join(ANNOTATION_MEMBERS)}")
    jobs = list(plan(layout, params, profile))
    keep_only(layout.shards, {out.name for _, _, out, _ in jobs})
    todo = [(image, annotations, out, fp, profile.label_map, profile.text) for image, annotations, out, fp in jobs
            if not is_done(out, fp)]
    workers = min(params.pack.workers or os.cpu_count() or 1, max(1, len(todo)))
    # fork: workers only read and write files, and a spawned interpreter's imports cost more than a small shard
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) if workers > 1 else nullcontext() as pool:
        results = pool.map(_pack_job, *zip(*todo)) if pool and todo else (_pack_job(*job) for job in todo)
        samples = sum(tqdm(results, total=len(todo), desc="pack", unit="shard", disable=not progress))
    return {"shards": len(jobs), "packed": len(todo), "already_done": len(jobs) - len(todo), "samples_packed": samples}
