"""Byte-offset index of a shard: where each sample's members sit in the tar, so a reader fetches the few
samples it shows with one seek each instead of scanning the shard.

Built once and cached beside the shard as `<shard>.index.json` (written atomically); the cache stands while the
shard's size and mtime and the caller's `tag` are those it recorded, and is rebuilt otherwise. A caller may store
a small JSON value per sample in it (`describe`), computed from the members once, at build time.
"""
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .shards import atomic_path
from .tarcopy import ShardError, list_members, mapped, samples

FORMAT = "shard-index/1"
Reader = Callable[[str], bytes]  # member extension -> its bytes


@dataclass(frozen=True)
class IndexEntry:
    """One sample: its key, {extension: (byte offset of the data, size)} and what `describe` said of it."""

    key: str
    members: dict[str, tuple[int, int]]
    info: object = None


def index_path(shard: Path) -> Path:
    """Where the shard's index is cached: beside it, `<name>.index.json`."""
    return shard.with_suffix(".index.json")


def read_member(shard: Path, span: tuple[int, int]) -> bytes:
    """The bytes of one member at (offset, size), read with one seek."""
    with open(shard, "rb") as f:
        f.seek(span[0])
        data = f.read(span[1])
    if len(data) != span[1]:
        raise ShardError(f"{shard}: member at byte {span[0]} is cut short (the shard changed; rebuild its index)")
    return data


def _scan(shard: Path) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """(key, member spans) per sample in file order, from the tar headers alone (read as pack reads them)."""
    with mapped(shard) as data:
        return [(key, {ext: (m.offset, m.size) for ext, m in members.items()})
                for key, members in samples(list_members(shard, data))]


def _stamp(shard: Path, tag: str) -> dict:
    stat = shard.stat()
    return {"format": FORMAT, "shard": shard.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "tag": tag}


def load_index(shard: Path, describe: Callable[[str, Reader], object] | None = None, tag: str = "") -> list[IndexEntry]:
    """The shard's index: the cached one if it was built from the shard as it is now with the same `tag`,
    else built (calling `describe(key, read)` per sample, `read(ext)` giving a member's bytes) and cached.
    Change `tag` whenever what `describe` returns changes."""
    stamp, cache = _stamp(shard, tag), index_path(shard)
    try:
        cached = json.loads(cache.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        cached = None
    if cached is not None and {k: cached.get(k) for k in stamp} == stamp:
        return [IndexEntry(s["key"], {ext: tuple(span) for ext, span in s["members"].items()}, s.get("info"))
                for s in cached["samples"]]
    entries = []
    for key, members in _scan(shard):
        info = describe(key, lambda ext, m=members: read_member(shard, m[ext])) if describe else None
        entries.append(IndexEntry(key, members, info))
    if _stamp(shard, tag) != stamp:
        raise ShardError(f"{shard}: changed while its index was built; try again when nothing writes it")
    body = {**stamp, "samples": [{"key": e.key, "members": e.members, "info": e.info} for e in entries]}
    with atomic_path(cache) as tmp:
        tmp.write_text(json.dumps(body, separators=(",", ":")))
    return entries
