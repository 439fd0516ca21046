"""The ingest stage: a raw collection becomes validated, deduplicated, split image shards plus manifest.parquet
and rejects.parquet. Nothing per image is held in Python objects beyond one batch or one shard at a time.

1. list and scan (parallel; `ingest_scan`): the source's listing goes to a memory-mapped Arrow file, then every
   image is read and hashed (key = first 24 hex of its sha256) with its provided files, and its header checked,
   unless the previous run recorded it with the same stamp (files' sizes and modification times);
2. plan (a pure function of the scan, on Arrow columns; `ingest_plan`): dedupe, split, cut into shards;
3. write (parallel, one job per shard: a local process or a Ray task; `executor.shard_map`): full decode and
   storage. A shard whose stats marker carries the same fingerprint (ingest params, source params, test_size, and
   the keys, names and provided-file hashes of its samples) is kept untouched. Manifest and rejects are gathered
   from the markers and written last.
"""
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from .executor import shard_map
from .imageio import Rejected, encode_png, fit_labels, fit_sketch, pil_limits, set_pil_limits, store_jpeg
from .ingest_plan import KEY_HEX, REJECTS_SCHEMA, Plan, PlannedShard, make_plan, test_count
from .rate import per_image
from .ingest_scan import MappedTable, ScanRows, previous_hashes, read_image, scan, write_listing
from shardio.layout import Layout
from .params.datasets import SourceParams
from .params.stages import IngestParams
from shardio.shards import (atomic_path, class_counts, fingerprint, is_done, keep_only, read_stats, remove_temporaries,
                            shard_writer, write_stats)
from shardio.space import reporting_full_disk
from .sources import SourceItem, item_from_json, list_items

# Bump when the stored bytes or markers for the same inputs and params change, so old shards are redone.
# 2: every marker records `seg_classes`.
INGEST_VERSION = 2
# Scratch files of a run, beside the manifest; deleted when it ends.
LISTING, SCAN = ".ingest-listing.arrow", ".ingest-scan.arrow"
# Rows per row group of manifest.parquet: what ingest holds of the manifest at once. A manifest of up to this many
# rows has the bytes of one written whole; a longer one has the same rows in more row groups.
MANIFEST_ROWS = 1 << 14

MANIFEST_SCHEMA = pa.schema([
    ("key", pa.string()), ("source", pa.string()), ("sha256", pa.string()), ("width", pa.int32()),
    ("height", pa.int32()), ("split", pa.string()), ("shard", pa.string()), ("provided", pa.list_(pa.string())),
    # what lets a rerun skip reading the file: see sources.item_stamp
    ("stamp", pa.string()), ("provided_sha", pa.string()),
])


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
                f"{self.seconds:.1f} s, {per_image(self.listed, self.seconds)} (images listed over the run's time)")


def ingest(layout: Layout, limits: IngestParams, source: SourceParams, test_size: float, workers: int = 1,
           progress: bool = True, use_ray: bool = False, ray_address: str | None = None,
           reserve_cpus: float = 1.0) -> Summary:
    """Run the stage for `layout.dataset` reading `source` (relative paths resolved by `layout.source`), on
    `workers` local processes (0: every core), or as Ray tasks when `use_ray` (on the cluster at `ray_address`;
    `executor.shard_map`); the bytes are the same."""
    start = time.perf_counter()
    layout = Layout(layout.data_dir.resolve(), layout.dataset)  # tasks on other nodes have another working dir
    base = fingerprint(INGEST_VERSION, limits.model_dump(), source.model_dump(), test_size)
    header_limits = (INGEST_VERSION, limits.min_size, limits.max_pixels, limits.max_aspect)
    for name in (layout.manifest.name, layout.rejects.name, LISTING, SCAN):
        remove_temporaries(layout.root, name)
    listing, scanned = layout.root / LISTING, layout.root / SCAN
    try:
        listed = write_listing(list_items(source.kind, layout.source(source.path)), listing, header_limits)
        # duplicates only make it fewer: a test_size taking them all is refused before any image is read
        test_count(pc.sum(pc.equal(MappedTable(listing).table["split"], "")).as_py() or 0, test_size)
        planned: list[Path] = []  # the shards, once planned: what a full disk's estimate counts
        with (reporting_full_disk(layout.images, planned, f"pipeline ingest --dataset {layout.dataset}"),
              pil_limits(limits.max_pixels),  # for jobs run in this process; `setup` sets it in workers
              shard_map("ray" if use_ray else "processes", workers, partial(set_pil_limits, limits.max_pixels),
                        ray_address, reserve_cpus) as run):
            rows = ScanRows(scan(listing, scanned, previous_hashes(layout.manifest, layout.rejects), run, limits,
                                 progress))
            plan = make_plan(rows, test_size, limits.shard_size)
            planned += [layout.images / shard.name for shard in plan.shards]
            keep_only(layout.images, {shard.name for shard in plan.shards})
            written: list[str] = []
            with tqdm(total=len(plan.order), desc="ingest: write", unit="img", disable=not progress) as bar:
                for stats in run(partial(write_shard, limits=limits), _unfinished(rows, plan, layout.images, base,
                                                                                  written)):
                    bar.update(stats["count"] + len(stats["rejects"]))
            remove_temporaries(layout.images)  # half-written by a task lost with its node, which Ray ran again
        accepted = write_manifest(rows, plan, layout.images, layout.manifest)
        rejects = gather_rejects(rows, plan, layout.images)
        write_table(rejects, layout.rejects)
    finally:
        listing.unlink(missing_ok=True)
        scanned.unlink(missing_ok=True)
    reasons = Counter(dict(zip(*_counts(rejects["reason"]))))
    duplicates = reasons.pop("duplicate", 0)
    return Summary(dataset=layout.dataset, accepted=accepted,
                   rejected=reasons, duplicates=duplicates, shards=len(plan.shards), written=len(written),
                   listed=listed, seconds=time.perf_counter() - start)


def _counts(column) -> tuple[list, list]:
    counts = pc.value_counts(column)
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()


def _unfinished(rows: ScanRows, plan: Plan, images: Path, base: str, names: list[str]):
    """The tasks of the planned shards not done yet, one at a time; their names are appended to `names`."""
    for shard in plan.shards:
        task = shard_task(rows, plan, shard, images, base)
        if not is_done(task.path, task.fingerprint):
            names.append(shard.name)
            yield task


def shard_task(scan: ScanRows, plan: Plan, shard: PlannedShard, images: Path, base: str) -> ShardTask:
    """The samples of one planned shard, read from the scan, and the fingerprint its marker must carry."""
    rows = _rows(scan, plan, shard, ["item", "sha256", "provided_sha"])
    entries = tuple(Entry(row["sha256"][:KEY_HEX], row["sha256"], row["provided_sha"], shard.split,
                          item_from_json(row["item"])) for row in rows)
    content = [[entry.key, entry.item.source, entry.provided] for entry in entries]
    path = images / shard.name
    return ShardTask(path, entries, fingerprint(base, path.name, content))


def _rows(scan: ScanRows, plan: Plan, shard: PlannedShard, columns: list[str]) -> list[dict]:
    return scan.take(plan.order.slice(shard.start, shard.stop - shard.start), columns)


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


def write_manifest(scan: ScanRows, plan: Plan, images: Path, path: Path) -> Counter:
    """Write the manifest (sorted by key) from the plan and the shard markers, in row groups of MANIFEST_ROWS, one
    shard's rows in Python and at most one row group's in Arrow at a time; return the accepted images per split.
    Each split's shards are in key order, so the key order of the whole is a merge of the splits' runs (one run
    per split where, as for sources without splits of their own, the test split's keys all come first)."""
    splits: dict[str, list[PlannedShard]] = {}
    for shard in plan.shards:
        splits.setdefault(shard.split, []).append(shard)
    accepted = Counter({split: 0 for split in splits})
    streams = [_manifest_rows(scan, plan, shards, images, accepted) for shards in splits.values()]
    heads = {index: rows for index, stream in enumerate(streams) if (rows := next(stream, None)) is not None}
    pending, buffered, written = [], 0, 0
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, MANIFEST_SCHEMA) as writer:
        while heads:
            index = min(heads, key=lambda i: heads[i]["key"][0].as_py())
            rows = heads[index]
            bound = min((heads[i]["key"][0].as_py() for i in heads if i != index), default=None)
            run = len(rows) if bound is None else pc.sum(pc.less(rows["key"], bound)).as_py()
            pending.append(rows.slice(0, run))
            buffered += run
            heads[index] = rows.slice(run) if run < len(rows) else next(streams[index], None)
            if heads[index] is None:
                del heads[index]
            while buffered >= MANIFEST_ROWS:
                group = pa.concat_tables(pending)
                writer.write_table(group.slice(0, MANIFEST_ROWS).combine_chunks())
                pending, buffered, written = [group.slice(MANIFEST_ROWS)], buffered - MANIFEST_ROWS, written + 1
        if buffered or not written:
            writer.write_table(pa.concat_tables([MANIFEST_SCHEMA.empty_table(), *pending]).combine_chunks())
    return +accepted


def _manifest_rows(scan: ScanRows, plan: Plan, shards: list[PlannedShard], images: Path, accepted: Counter):
    """The manifest's rows of one split's shards, a non-empty table per shard, in key order; counted in
    `accepted`."""
    for shard in shards:
        stats = read_stats(images / shard.name)
        rows = {row["sha256"][:KEY_HEX]: row for row in _rows(scan, plan, shard, ["source", "sha256", "stamp",
                                                                                  "provided_sha"])}
        samples = [(key, rows[key]["source"], rows[key]["sha256"], width, height, shard.split, shard.name, provided,
                    rows[key]["stamp"], rows[key]["provided_sha"]) for key, width, height, provided in stats["samples"]]
        accepted[shard.split] += len(samples)
        if samples:
            yield _table(samples, MANIFEST_SCHEMA)


def gather_rejects(scan: ScanRows, plan: Plan, images: Path) -> pa.Table:
    """The rejects (sorted by source) from the plan and the shard markers, one shard's rows in Python at a time."""
    rejects = [plan.rejects]
    for shard in plan.shards:
        stats = read_stats(images / shard.name)
        if not stats["rejects"]:
            continue
        by_source = {row["source"]: row for row in _rows(scan, plan, shard, ["source", *REJECTS_SCHEMA.names[3:]])}
        rejects.append(_table([(source, reason, detail, *(by_source[source][name] for name in REJECTS_SCHEMA.names[3:]))
                               for source, reason, detail in stats["rejects"]], REJECTS_SCHEMA))
    return pa.concat_tables(rejects).sort_by([(name, "ascending") for name in ("source", "reason", "detail")])


def _table(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows)) if rows else [[] for _ in schema.names]
    return pa.Table.from_arrays([pa.array(col, type=f.type) for col, f in zip(columns, schema)], schema=schema)


def write_table(table: pa.Table, path: Path) -> None:
    """Write a table as a parquet file atomically; the same rows always give the same bytes."""
    with atomic_path(path) as tmp:
        pq.write_table(table.combine_chunks(), tmp)

