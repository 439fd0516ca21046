"""Shard files as the contract wants them: deterministic tars written atomically and durably, a stats file written
last as the commit marker (carrying the fingerprint of what made the shard), and a checked reader.

Durability: a shard is fsynced before it is renamed into place, and its marker is written only after that, so a
marker never stands for bytes that a crash could lose. The marker itself is not fsynced (that cost as much as the
shard's own sync on small shards, and bought nothing): a power loss can leave it missing or empty, which reads as
"not done" and costs a redo. That a marker found after a crash implies its shard's rename survived too rests on the
file system committing metadata in order (ext4's and XFS's journals do); `is_done` checks the shard exists anyway.
"""
import hashlib
import json
import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .layout import SHARD_RE, stats_path
from .tarcopy import MEMBER_RE, ShardError, TarCopier

# Files kept beside a shard and named after it: its stats marker, a training shard's class counts per sample
# (layout.classes_path) and its byte-offset index (shardio/index.py).
SIDECARS = (".stats.json", ".classes.json", ".index.json")


@contextmanager
def atomic_path(path: Path, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block succeeds it is synced to disk (unless not `durable`)
    and renamed to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class TarWriter:
    """Writes samples (`{"__key__": key, ext: bytes}`) as `<key>.<ext>` members, extensions sorted, with fixed
    metadata (`tarcopy.header`: mode 0444, owner `bigdata`, mtime 0), so the same samples always give the same
    bytes: exactly those of webdataset's TarWriter with `encoder=False, mtime=0`. Not that class itself: importing
    webdataset imports torch, seconds of CPU in every ingest worker. The bytes go through `tarcopy.TarCopier`,
    the one tar writer, which pack uses too."""

    def __init__(self, path: Path):
        self._tar = TarCopier(path)

    def write(self, sample: dict[str, bytes]) -> None:
        key = sample["__key__"]
        for ext in sorted(k for k in sample if not k.startswith("_")):
            self._tar.add(f"{key}.{ext}", sample[ext])

    def close(self) -> None:
        self._tar.close()

    def abort(self) -> None:
        self._tar.abort()


@contextmanager
def shard_writer(path: Path) -> Iterator[TarWriter]:
    """A `TarWriter` on a temporary file, synced and renamed to `path` when the block succeeds (byte-identical
    reruns)."""
    with atomic_path(path) as tmp:
        writer = TarWriter(tmp)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.close()


def remove_temporaries(folder: Path, name: str = "*") -> None:
    """Delete the half-written files killed runs left in `folder` (`.<name>.tmp-PID`, see `atomic_path`);
    call only while nothing writes there."""
    for tmp in folder.glob(f".{name}.tmp-*"):
        tmp.unlink(missing_ok=True)


def keep_only(folder: Path, shards: set[str]) -> None:
    """Make `folder` hold only the shards named in `shards`: every other contract-named shard and its sidecars
    (stats marker, index; left by an earlier plan, e.g. before a re-sharding) are deleted, and so are temporaries."""
    if not folder.is_dir():
        return
    remove_temporaries(folder)
    for path in folder.iterdir():
        shard = next((path.name.removesuffix(s) + ".tar" for s in SIDECARS if path.name.endswith(s)), path.name)
        if SHARD_RE.match(shard) and shard not in shards:
            path.unlink()


def fingerprint(*parts) -> str:
    """A short stable hash of JSON-serialisable parts (params section, weights hash, code version)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def class_counts(labels: np.ndarray) -> list[list[int]]:
    """[[class id, pixels], ...] of the ids present in a uint8 label map: what a shard's stats record of each
    segmentation it holds (under `seg_classes`, by key), so that pack and the card never decode one."""
    if labels.dtype != np.uint8:
        raise TypeError(f"label maps are uint8 class ids, got {labels.dtype}")
    counts = np.bincount(labels.ravel(), minlength=256)
    return [[int(i), int(counts[i])] for i in np.flatnonzero(counts)]


def write_stats(shard: Path, stats: dict) -> None:
    """Write the shard's stats file atomically (not synced: see the module's note); call it after the shard itself
    is in place."""
    with atomic_path(stats_path(shard), durable=False) as tmp:
        tmp.write_text(json.dumps(stats, sort_keys=True, indent=1) + "\n")


def read_stats(shard: Path) -> dict | None:
    """The shard's stats, or None if the shard is not (completely) done: no marker, or one a power loss left empty
    or cut short."""
    try:
        stats = json.loads(stats_path(shard).read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return stats if isinstance(stats, dict) else None


def is_done(shard: Path, fingerprint: str) -> bool:
    """True if the shard and its marker exist and were made with the same fingerprint."""
    stats = read_stats(shard)
    return stats is not None and shard.exists() and stats.get("fingerprint") == fingerprint


def read_shard(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (key, {ext: bytes}) per sample, in file order; refuse links, directories and odd names."""
    with tarfile.open(path, "r|") as tar:
        key, sample = None, {}
        for member in tar:
            match = MEMBER_RE.match(member.name)
            if not member.isfile() or match is None:
                raise ShardError(f"{path}: member {member.name!r} is not a plain `<key>.<ext>` file")
            if match["key"] != key:
                if key is not None:
                    yield key, sample
                key, sample = match["key"], {}
            sample[match["ext"]] = tar.extractfile(member).read()
        if key is not None:
            yield key, sample

