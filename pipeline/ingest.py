"""The ingest stage: a raw collection becomes validated, deduplicated, split image shards plus manifest.parquet
and rejects.parquet.

1. scan (parallel): read and hash every listed image (key = first 24 hex of its sha256) and its provided files,
   and check its header;
2. plan (a pure function of the scan): the first source name (sorted) keeps a key and its duplicates are listed
   in rejects.parquet as `duplicate` (detail: the kept source); sources without their own split are split by key
   (`choose_test_keys`); each split's keys, in key order, are cut into shards of `shard_size`;
3. write (parallel, one task per shard): full decode and storage. A shard whose stats marker carries the same
   fingerprint (ingest params, source params, test_size, and the keys, names and provided-file hashes of its
   samples) is kept untouched. Manifest and rejects are gathered from the markers and written last.
"""
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from .imageio import Rejected, encode_png, fit_labels, fit_sketch, open_checked, pil_limits, set_pil_limits, store_jpeg
from shardio.layout import Layout, shard_name
from .params.datasets import SourceParams
from .params.stages import IngestParams
from shardio.shards import (atomic_path, class_counts, fingerprint, is_done, keep_only, read_stats, remove_temporaries,
                            shard_writer, write_stats)
from .sources import Skipped, SourceItem, list_items, provided_digest

# Bump when the stored bytes for the same inputs and params change, so old shards are redone.
INGEST_VERSION = 1
KEY_HEX = 24
MAX_BYTES_PER_PIXEL = 8  # 16-bit RGBA stored uncompressed: the most any supported format spends on a pixel

MANIFEST_SCHEMA = pa.schema([
    ("key", pa.string()), ("source", pa.string()), ("sha256", pa.string()), ("width", pa.int32()),
    ("height", pa.int32()), ("split", pa.string()), ("shard", pa.string()), ("provided", pa.list_(pa.string())),
])
REJECTS_SCHEMA = pa.schema([("source", pa.string()), ("reason", pa.string()), ("detail", pa.string())])


@dataclass(frozen=True)
class Entry:
    """One planned sample: its key, the full hash of its bytes, its split and where it comes from."""

    key: str
    sha256: str
    provided: str  # digest of the provided segmentation, sketch and captions: a change to them redoes the shard
    split: str
    item: SourceItem


@dataclass(frozen=True)
class ShardTask:
    """One image shard to write: its path, its samples in order, and the fingerprint its marker must carry."""

    path: Path
    entries: tuple[Entry, ...]
    fingerprint: str


@dataclass
class Plan:
    """Shards to have on disk, and the inputs already turned away before decoding."""

    shards: list[ShardTask]
    rejects: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Summary:
    """What a run did, for the one-line report."""

    dataset: str
    accepted: Counter
    rejected: Counter
    duplicates: int
    shards: int
    written: int
    listed: int
    seconds: float

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        splits = ", ".join(f"{split} {n}" for split, n in sorted(self.accepted.items()))
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(self.rejected.items()))
        return (f"ingest {self.dataset}: {sum(self.accepted.values())} accepted ({splits or 'none'}), "
                f"{sum(self.rejected.values())} rejected ({reasons or 'none'}), {self.duplicates} duplicates, "
                f"{self.shards} shards ({self.written} written, {self.shards - self.written} already done), "
                f"{self.seconds:.1f} s, {self.listed / max(self.seconds, 1e-9):.1f} images/s")


def ingest(layout: Layout, limits: IngestParams, source: SourceParams, test_size: float,
           workers: int = 1, progress: bool = True) -> Summary:
    """Run the stage for `layout.dataset` reading `source` (relative paths resolved by `layout.source`)."""
    start = time.perf_counter()
    listed = list(list_items(source.kind, layout.source(source.path)))
    items = [x for x in listed if isinstance(x, SourceItem)]
    skipped = [(x.source, x.reason, x.detail) for x in listed if isinstance(x, Skipped)]
    base = fingerprint(INGEST_VERSION, limits.model_dump(), source.model_dump(), test_size)
    with _workers(workers, limits.max_pixels) as run:
        scanned = list(tqdm(run(partial(probe, limits=limits), items, chunksize=_chunk(len(items), workers)),
                            total=len(items), desc="ingest: scan", unit="img", disable=not progress))
        plan = make_plan(items, scanned, test_size, limits.shard_size, layout.images, base)
        plan.rejects += skipped
        remove_stale(layout, {task.path.name for task in plan.shards})
        todo = [task for task in plan.shards if not is_done(task.path, task.fingerprint) or lacks_classes(task.path)]
        with tqdm(total=sum(len(t.entries) for t in todo), desc="ingest: write", unit="img",
                  disable=not progress) as bar:
            for task, _ in zip(todo, run(partial(write_shard, limits=limits), todo, chunksize=1)):
                bar.update(len(task.entries))
    manifest, rejects = gather(plan)
    write_table(manifest, MANIFEST_SCHEMA, layout.manifest)
    write_table(rejects, REJECTS_SCHEMA, layout.rejects)
    reasons = Counter(reason for _, reason, _ in rejects)
    duplicates = reasons.pop("duplicate", 0)
    return Summary(dataset=layout.dataset, accepted=Counter(row[5] for row in manifest), rejected=reasons,
                   duplicates=duplicates, shards=len(plan.shards), written=len(todo), listed=len(listed),
                   seconds=time.perf_counter() - start)


def probe(item: SourceItem, limits: IngestParams) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """((sha256 of the image bytes, digest of its provided files), None) when the header passes the limits,
    else (None, (reason, detail))."""
    try:
        data = read_image(item, limits)
        open_checked(data, limits)
    except Rejected as r:
        return None, (r.reason, r.detail)
    except Exception as e:  # a decoder failing in an unforeseen way must not stop the run
        return None, ("error", f"{type(e).__name__}: {e}")
    return (hashlib.sha256(data).hexdigest(), provided_digest(item)), None


def read_image(item: SourceItem, limits: IngestParams) -> bytes:
    """The image's bytes; a file larger than any image within `max_pixels` could be is not even read."""
    try:
        size = item.image.nbytes()
        if size > MAX_BYTES_PER_PIXEL * limits.max_pixels + 2**20:
            raise Rejected("too_large", f"{size} bytes: more than an image of max_pixels={limits.max_pixels} holds")
        return item.image.read()
    except OSError as e:
        raise Rejected("unreadable", str(e)) from None


def make_plan(items: list[SourceItem], scanned: list, test_size: float, shard_size: int, images: Path,
              base: str) -> Plan:
    """Deduplicate, split and shard the scan; the same scan always gives the same plan."""
    plan, entries = Plan(shards=[]), {}
    for item, (hashes, problem) in sorted(zip(items, scanned), key=lambda pair: pair[0].source):
        if problem is not None:
            plan.rejects.append((item.source, *problem))
        elif (key := hashes[0][:KEY_HEX]) in entries:
            plan.rejects.append((item.source, "duplicate", entries[key].item.source))
        else:
            entries[key] = Entry(key, *hashes, item.split or "", item)
    unsplit = sorted(key for key, entry in entries.items() if not entry.split)
    tests = choose_test_keys(unsplit, test_size)
    for key in unsplit:
        entries[key] = replace(entries[key], split="test" if key in tests else "train")
    for split in sorted({entry.split for entry in entries.values()}):
        keys = sorted(key for key, entry in entries.items() if entry.split == split)
        for index, first in enumerate(range(0, len(keys), shard_size)):
            chunk = tuple(entries[key] for key in keys[first:first + shard_size])
            content = [[entry.key, entry.item.source, entry.provided] for entry in chunk]
            path = images / shard_name(split, index)
            plan.shards.append(ShardTask(path, chunk, fingerprint(base, path.name, content)))
    return plan


def choose_test_keys(keys: list[str], test_size: float) -> set[str]:
    """The keys that go to test: the smallest `test_size` of them (a count >= 1, or a fraction < 1 of the keys,
    rounded). Keys are content hashes, so this is a uniform random subset that renaming or reordering the
    files, or the number of workers, never changes."""
    count = round(test_size * len(keys)) if test_size < 1 else int(test_size)
    return set(sorted(keys)[:count])


def write_shard(task: ShardTask, limits: IngestParams) -> dict:
    """Decode and store every planned sample of one shard, then write its marker; return the marker's stats."""
    samples, rejects, seg_classes = [], [], {}
    with shard_writer(task.path) as writer:
        for entry in task.entries:
            try:
                sample, provided, size, classes = build_sample(entry, limits)
            except Rejected as r:
                rejects.append([entry.item.source, r.reason, r.detail])
                continue
            except Exception as e:  # a decoder failing in an unforeseen way must not stop the run
                rejects.append([entry.item.source, "error", f"{type(e).__name__}: {e}"])
                continue
            writer.write(sample)
            samples.append([entry.key, *size, provided])
            if classes is not None:
                seg_classes[entry.key] = classes
    stats = {"fingerprint": task.fingerprint, "count": len(samples), "samples": samples, "rejects": rejects,
             "seg_classes": seg_classes}  # pixels per class of each provided seg.png, for pack's card
    write_stats(task.path, stats)
    return stats


def build_sample(entry: Entry, limits: IngestParams) -> tuple[dict, list[str], tuple[int, int], list | None]:
    """The shard members of one sample (jpg, json, and the provided seg.png / sketch.png / txt), what it
    provides, its stored size, and the class counts of its provided segmentation (None without one)."""
    item = entry.item
    data = read_image(item, limits)
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise Rejected("changed", "the file changed while ingest was running")
    stored = store_jpeg(data, limits)
    sample, provided, classes = {"__key__": entry.key, "jpg": stored.jpg}, [], None
    labels = item.read_seg(limits.max_pixels)
    if labels is not None:
        fitted = fit_labels(labels, stored)
        sample["seg.png"], classes = encode_png(fitted), class_counts(fitted)
        provided.append("seg")
    strokes = item.read_sketch(limits.max_pixels)
    if strokes is not None:
        sample["sketch.png"] = encode_png(fit_sketch(strokes, stored))
        provided.append("sketch")
    captions = item.read_captions()
    if captions:
        sample["txt"] = "\n".join(captions).encode()
        provided.append("txt")
    meta = {"key": entry.key, "source": item.source, "width": stored.width, "height": stored.height,
            "split": entry.split, "provided": provided}
    sample["json"] = json.dumps(meta, sort_keys=True).encode()
    return sample, provided, (stored.width, stored.height), classes


def lacks_classes(shard: Path) -> bool:
    """True for a finished shard written before ingest recorded the class counts of provided segmentations."""
    stats = read_stats(shard) or {}
    return "seg_classes" not in stats and any("seg" in provided for *_, provided in stats.get("samples", []))


def gather(plan: Plan) -> tuple[list[tuple], list[tuple]]:
    """Manifest rows (sorted by key) and reject rows (sorted by source) from the plan and the shard markers."""
    manifest, rejects = [], list(plan.rejects)
    for task in plan.shards:
        stats = read_stats(task.path)
        entries = {entry.key: entry for entry in task.entries}
        for key, width, height, provided in stats["samples"]:
            entry = entries[key]
            manifest.append((key, entry.item.source, entry.sha256, width, height, entry.split, task.path.name,
                             provided))
        rejects += [tuple(row) for row in stats["rejects"]]
    return sorted(manifest), sorted(rejects)


def write_table(rows: list[tuple], schema: pa.Schema, path: Path) -> None:
    """Write rows as a parquet file atomically; the same rows always give the same bytes."""
    columns = list(zip(*rows)) if rows else [[] for _ in schema.names]
    table = pa.Table.from_arrays([pa.array(col, type=f.type) for col, f in zip(columns, schema)], schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def remove_stale(layout: Layout, keep: set[str]) -> None:
    """Delete what killed runs left (temporaries) and shards, with markers, the current plan no longer has."""
    for table in (layout.manifest, layout.rejects):
        remove_temporaries(table.parent, table.name)
    keep_only(layout.images, keep)


def available_cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def _workers(workers: int, max_pixels: int) -> Iterator:
    """A `map(fn, items, chunksize)` over `workers` processes (in this process when workers <= 1)."""
    if workers <= 1:
        with pil_limits(max_pixels):
            yield lambda fn, items, chunksize: map(fn, items)
        return
    with ProcessPoolExecutor(workers, initializer=set_pil_limits, initargs=(max_pixels,)) as pool:
        yield pool.map


def _chunk(n: int, workers: int) -> int:
    return max(1, min(64, n // (4 * max(workers, 1))))

