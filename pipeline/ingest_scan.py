"""Ingest's scan: the source's listing and every image's hashes and header check, streamed into a memory-mapped
Arrow table on disk (one row per listed entry, in listing order), so the driver holds one batch of Python objects
at a time however large the collection.

An entry whose stamp (its item, the size and modification time of its files, the header limits; see
`sources.item_stamp`) equals the stamp the previous run recorded for it in manifest.parquet or rejects.parquet is
not read again: its hashes, or its header's verdict, come from there."""
import hashlib
import mmap
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from .imageio import Rejected, open_checked
from .params.stages import IngestParams
from .sources import SourceItem, item_from_json, item_stamp, item_to_json, provided_digest
from shardio.shards import atomic_path

MAX_BYTES_PER_PIXEL = 8  # 16-bit RGBA stored uncompressed: the most any supported format spends on a pixel
BATCH = 4096             # listing rows turned into Python objects at a time
CHUNK = 32               # images per scan job
# Verdicts that say nothing lasting about the file's bytes: never taken from an earlier run.
TRANSIENT = ("unreadable", "error", "changed")
HASHES = [("sha256", pa.string()), ("provided_sha", pa.string()), ("reason", pa.string()), ("detail", pa.string())]
LISTING_SCHEMA = pa.schema([("source", pa.string()), ("item", pa.string()), ("split", pa.string()),
                            ("stamp", pa.string()), ("reason", pa.string()), ("detail", pa.string())])
SCAN_SCHEMA = pa.schema([*[f for f in LISTING_SCHEMA if f.name not in ("reason", "detail")], *HASHES])


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


def scan_chunk(job: tuple[list[int], list[str]], limits: IngestParams) -> list[tuple]:
    """(row, sha256, provided digest, reason, detail) for each (row, item JSON) of one scan job."""
    rows, texts = job
    out = []
    for row, text in zip(rows, texts):
        hashes, problem = probe(item_from_json(text), limits)
        out.append((row, *(hashes or (None, None)), *(problem or (None, None))))
    return out


def write_listing(listed: Iterable, path: Path, stamp_extra: tuple) -> int:
    """Write what the source lists as rows of LISTING_SCHEMA (a skipped entry carries its reason); returns the
    number of rows."""
    count, rows = 0, []
    with atomic_path(path) as tmp, pa.ipc.new_file(str(tmp), LISTING_SCHEMA) as writer:
        for entry in listed:
            if isinstance(entry, SourceItem):
                rows.append((entry.source, item_to_json(entry), entry.split or "", item_stamp(entry, *stamp_extra),
                             None, None))
            else:
                rows.append((entry.source, None, None, None, entry.reason, entry.detail))
            if len(rows) == BATCH:
                count += _flush(writer, rows, LISTING_SCHEMA)
        count += _flush(writer, rows, LISTING_SCHEMA)
    return count


def _flush(writer, rows: list[tuple], schema: pa.Schema) -> int:
    if rows:
        writer.write_batch(pa.record_batch([list(col) for col in zip(*rows)], schema=schema))
    count = len(rows)
    rows.clear()
    return count


class MappedTable:
    """An Arrow IPC file mapped read-only (`table`): its columns are paged in as they are read, and `release()`
    lets go of the pages read so far (they stay in the page cache and are read again on the next access), so the
    process's resident memory does not grow with the file."""

    def __init__(self, path: Path):
        with open(path, "rb") as file:
            self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        self.table = pa.ipc.open_file(pa.py_buffer(self._map)).read_all()

    def release(self) -> None:
        """Drop this process's mapping of the pages read so far (Python objects made from them are copies)."""
        if hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)


class ScanRows:
    """Rows of a mapped table by row number, taken chunk by chunk (Arrow's Table.take first concatenates each
    chunked column whole: a copy of the column per call, memory and CPU that grow with the collection), the pages
    read let go after each call."""

    def __init__(self, mapped: MappedTable):
        self.mapped, self.schema = mapped, mapped.table.schema
        self.batches = mapped.table.to_batches()
        self.starts = np.cumsum([0, *(batch.num_rows for batch in self.batches)])

    def each_batch(self) -> Iterator[pa.RecordBatch]:
        """The batches in order, each let go once the next is asked for."""
        for batch in self.batches:
            yield batch
            self.mapped.release()

    def table(self, rows: np.ndarray, columns: list[str]) -> pa.Table:
        """The `columns` of the table's `rows` (row numbers), in their order."""
        rows = np.asarray(rows, np.int64)
        chunk = np.searchsorted(self.starts, rows, side="right") - 1
        by_chunk = np.argsort(chunk, kind="stable")
        bounds = np.searchsorted(chunk[by_chunk], np.arange(len(self.batches) + 1))
        parts = [self.batches[index].select(columns).take(pa.array(rows[by_chunk[start:stop]] - self.starts[index]))
                 for index, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])) if stop > start]
        taken = pa.Table.from_batches(parts, pa.schema([self.schema.field(name) for name in columns]))
        taken = taken.take(pa.array(np.argsort(by_chunk)))
        self.mapped.release()
        return taken

    def take(self, rows: pa.Array, columns: list[str]) -> list[dict]:
        """The `columns` of the table's `rows`, in their order, as Python dicts."""
        return self.table(rows.to_numpy(), columns).to_pylist()


def previous_hashes(manifest: Path, rejects: Path) -> pa.Table:
    """(source, stamp) -> sha256, provided_sha, reason, detail as the previous run recorded them: accepted and
    hashed entries (reason null), and header verdicts that do not depend on the moment."""
    parts = []
    if manifest.exists() and "stamp" in pq.read_schema(manifest).names:
        table = pq.read_table(manifest, columns=["source", "stamp", "sha256", "provided_sha"])
        parts.append(table.append_column("reason", pa.nulls(len(table), pa.string()))
                     .append_column("detail", pa.nulls(len(table), pa.string())))
    if rejects.exists() and "stamp" in pq.read_schema(rejects).names:
        table = pq.read_table(rejects, columns=["source", "stamp", "sha256", "provided_sha", "reason", "detail"])
        table = table.filter(pc.is_valid(table["stamp"]))
        hashed = pc.is_valid(table["sha256"])  # passed the header check (rejected later: duplicate, at decoding)
        reason = pc.if_else(hashed, pa.scalar(None, pa.string()), table["reason"])
        detail = pc.if_else(hashed, pa.scalar(None, pa.string()), table["detail"])
        table = table.set_column(4, "reason", reason).set_column(5, "detail", detail)
        parts.append(table.filter(pc.or_(hashed, pc.invert(pc.is_in(table["reason"], pa.array(TRANSIENT))))))
    schema = pa.schema([("source", pa.string()), ("stamp", pa.string()), *HASHES])
    return pa.concat_tables([p.cast(schema) for p in parts]) if parts else schema.empty_table()


def known_hashes(listing: pa.Table, previous: pa.Table) -> pa.Table:
    """For every listing row, in order, the previous run's hashes and verdict under the same source and stamp
    (nulls where there are none)."""
    if not len(previous):  # a first run: nothing to join
        return pa.table({name: pa.nulls(len(listing), kind) for name, kind in HASHES})
    rows = pa.table({"source": listing["source"], "stamp": listing["stamp"],
                     "row": pa.array(np.arange(len(listing), dtype=np.int64))})
    joined = rows.join(previous, keys=["source", "stamp"], join_type="left outer").sort_by("row")
    row = joined["row"].to_numpy()
    first = np.ones(len(row), bool)
    first[1:] = row[1:] != row[:-1]  # a source recorded twice (a list naming a file twice): one answer is enough
    return joined.filter(pa.array(first)).select([name for name, _ in HASHES])


def scan(listing_path: Path, scan_path: Path, previous: pa.Table, run: Callable[..., Iterator],
         limits: IngestParams, progress: bool) -> MappedTable:
    """Hash and header-check every listed image that `previous` does not answer for, on `run` (an
    `executor.shard_map`), and write the listing with its hashes and verdicts (SCAN_SCHEMA, listing order) to
    `scan_path`; returns it mapped."""
    mapped = MappedTable(listing_path)
    listing = mapped.table
    known = known_hashes(listing, previous)
    todo = pc.and_(pc.is_null(listing["reason"]), pc.and_(pc.is_null(known["sha256"]), pc.is_null(known["reason"])))
    results = iter(run(partial(scan_chunk, limits=limits), _jobs(listing, todo), ordered=True))
    waiting: deque = deque()
    bar = tqdm(total=pc.sum(todo).as_py() or 0, desc="ingest: scan", unit="img", disable=not progress)
    with bar, atomic_path(scan_path) as tmp, pa.ipc.new_file(str(tmp), SCAN_SCHEMA) as writer:
        for start in range(0, len(listing), BATCH):
            part, answers = listing.slice(start, BATCH), known.slice(start, BATCH)
            columns = {name: answers[name].to_pylist() for name, _ in HASHES}
            listed_reason, listed_detail = part["reason"].to_pylist(), part["detail"].to_pylist()
            for i, needed in enumerate(todo.slice(start, BATCH).to_pylist()):
                if listed_reason[i] is not None:
                    columns["reason"][i], columns["detail"][i] = listed_reason[i], listed_detail[i]
                elif needed:
                    while not waiting:
                        waiting.extend(next(results))
                    row, *values = waiting.popleft()
                    assert row == start + i, (row, start + i)
                    for (name, _), value in zip(HASHES, values):
                        columns[name][i] = value
                    bar.update()
            arrays = [part[f.name].combine_chunks() for f in LISTING_SCHEMA if f.name not in ("reason", "detail")]
            writer.write_batch(pa.record_batch([*arrays, *(pa.array(columns[n], t) for n, t in HASHES)],
                                               schema=SCAN_SCHEMA))
            mapped.release()
    return MappedTable(scan_path)


def _jobs(listing: pa.Table, todo: pa.Array) -> Iterator[tuple[list[int], list[str]]]:
    """The rows to scan and their item JSON, CHUNK at a time, in row order."""
    rows, texts = [], []
    for start in range(0, len(listing), BATCH):
        needed = todo.slice(start, BATCH).to_pylist()
        items = listing["item"].slice(start, BATCH).to_pylist()
        for i, flag in enumerate(needed):
            if flag:
                rows.append(start + i)
                texts.append(items[i])
                if len(rows) == CHUNK:
                    yield rows, texts
                    rows, texts = [], []
    if rows:
        yield rows, texts
