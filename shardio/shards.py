"""Shard files as the contract wants them: deterministic tars written atomically and durably, a stats file written
last as the commit marker (carrying the fingerprint of what made the shard and the shard's size), and a checked
reader.

A marker vouches for its shard only while the shard is the size the marker recorded (`damage`): a shard cut short or
grown since (a full disk, a bad copy, a hand edit) is not done for the stage that writes it (`is_done`, so a rerun
redoes it) and is refused by every stage that reads it (`checked_stats`, naming the rerun that repairs it). A
change that keeps the size is not noticed: that would cost a hash of every shard at every check.

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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .layout import SHARD_RE, stats_path
from .tarcopy import MEMBER_RE, ShardError, TarCopier

if TYPE_CHECKING:
    import numpy as np

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
    """Delete the half-written files killed runs left in `folder` (`.<name>.tmp-PID`, see `atomic_path`): those
    whose PID no process on this machine has; call only while this run writes nothing there."""
    for tmp in folder.glob(f".{name}.tmp-*"):
        pid = tmp.name.rpartition(".tmp-")[2]
        if not (pid.isdigit() and _running(int(pid))):
            tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """True if a live process has this PID here: on Linux its /proc state is not zombie (a killed process stays
    one until it is reaped, which may lag), elsewhere signal 0 reaches it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return not Path("/proc/self").exists() and _signalled(pid)
    except (OSError, IndexError):
        return _signalled(pid)


def _signalled(pid: int) -> bool:
    """True if signal 0 reaches a process with this PID (where there is no /proc to read)."""
    try:
        os.kill(pid, 0)  # checks without sending anything
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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


def class_counts(labels: "np.ndarray") -> list[list[int]]:
    """[[class id, pixels], ...] of the ids present in a uint8 label map: what a shard's stats record of each
    segmentation it holds (under `seg_classes`, by key), so that pack and the card never decode one."""
    import numpy as np  # here: pack, which reads counts and never makes them, starts without numpy

    if labels.dtype != np.uint8:
        raise TypeError(f"label maps are uint8 class ids, got {labels.dtype}")
    counts = np.bincount(labels.ravel(), minlength=256)
    return [[int(i), int(counts[i])] for i in np.flatnonzero(counts)]


def write_stats(shard: Path, stats: dict) -> None:
    """Write the shard's stats file atomically (not synced: see the module's note), recording the shard's size in
    bytes (`bytes`); call it after the shard itself is in place."""
    with atomic_path(stats_path(shard), durable=False) as tmp:
        tmp.write_text(json.dumps({**stats, "bytes": shard.stat().st_size}, sort_keys=True, indent=1) + "\n")


def read_stats(shard: Path) -> dict | None:
    """The shard's stats, or None if the shard is not (completely) done: no marker, or one a power loss left empty
    or cut short."""
    try:
        stats = json.loads(stats_path(shard).read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return stats if isinstance(stats, dict) else None


def damage(shard: Path, stats: dict) -> str | None:
    """What is wrong with a marked shard, None if it is there at the size its marker (`stats`) recorded. A marker
    without a size (written before markers recorded one) vouches for nothing."""
    try:
        size = shard.stat().st_size
    except FileNotFoundError:
        return "missing (its marker is there)"
    if "bytes" not in stats:
        return f"its marker ({stats_path(shard).name}) records no size: it was written before markers did"
    if size != stats["bytes"]:
        return (f"is {size} bytes but its marker ({stats_path(shard).name}) recorded {stats['bytes']}: cut short or "
                "changed since it was written")
    return None


def is_done(shard: Path, fingerprint: str, requires: Iterable[Path] = ()) -> bool:
    """True if the shard and its marker exist, the shard is the size the marker recorded and was made with the
    same fingerprint, and every file in `requires` (what the stage writes beside the shard before its marker) is
    there: the one done-rule of every stage. A marker of an older format never matches: a stage whose files change
    bumps its code version, which is in the fingerprint."""
    stats = read_stats(shard)
    return (stats is not None and stats.get("fingerprint") == fingerprint and damage(shard, stats) is None
            and all(path.exists() for path in requires))


def checked_stats(shard: Path, rerun: str) -> dict:
    """The stats of a finished shard that is as its marker recorded it; else a ShardError naming the shard and
    `rerun`, the command that writes it again."""
    stats = read_stats(shard)
    if stats is None:
        what = "missing" if not shard.exists() else f"unfinished (no {stats_path(shard).name} marker)"
        raise ShardError(f"{shard}: {what}; run `{rerun}`")
    problem = damage(shard, stats)
    if problem is not None:
        raise ShardError(f"{shard}: {problem}; run `{rerun}`, which writes it again")
    return stats


def image_fingerprint(image_shard: Path) -> str:
    """The fingerprint ingest recorded in the image shard's marker; an unfinished shard, or one that is not the
    size its marker recorded (damaged), is a ShardError saying to run ingest again."""
    dataset = image_shard.parent.parent.name  # <data-dir>/<dataset>/images/<shard> (layout.Layout)
    return checked_stats(image_shard, f"pipeline ingest --dataset {dataset}")["fingerprint"]


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

