"""Existing WebDataset tar shards, given as a brace pattern (`raw/wds/shard-{000000..000009}.tar`).

Members must be plain files named `<key>.<ext>` (the checked names of shardio.shards), optionally under plain
folders (`./`, `part1/000.jpg`: the folders belong to the key, as WebDataset reads them); links, devices, absolute
names, `..` and any other character are skipped as `bad_member` and never followed. A sample's image is its first member with an image
extension; `seg.png` is its provided segmentation and `txt` its captions. Uncompressed tars only (members are
read in place by offset)."""
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

from braceexpand import braceexpand

from shardio.tarcopy import MEMBER_RE
from . import IMAGE_SUFFIXES, Blob, Skipped, SourceError, SourceItem

IMAGE_EXTS = tuple(suffix[1:] for suffix in IMAGE_SUFFIXES)
FOLDER_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")  # not empty, not `.` or `..`


def fits(root: Path) -> bool:
    """A path or brace pattern naming .tar files."""
    return str(root).endswith(".tar")


def items(root: Path) -> Iterator[SourceItem | Skipped]:
    """The samples of every tar the pattern names, named `<tar>:<key>` with `<tar>` relative to the pattern's folder."""
    pattern = str(root)
    tars = list(braceexpand(pattern))
    if not tars:
        raise SourceError(f"{pattern}: the pattern names no tar file")
    base = Path(pattern.split("{", 1)[0]).parent
    for tar in tars:
        name = Path(tar).relative_to(base).as_posix() if Path(tar).is_relative_to(base) else tar
        if not Path(tar).is_file():
            yield Skipped(name, "missing", f"{tar} is not a file")
            continue
        yield from _tar_items(Path(tar), name)


def _tar_items(path: Path, name: str) -> Iterator[SourceItem | Skipped]:
    seen: set[str] = set()
    key, members = None, {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                parsed = split_member(member.name) if member.isfile() else None
                if parsed is None:
                    yield Skipped(f"{name}:{member.name}", "bad_member", "not a plain `<key>.<ext>` file")
                    continue
                if parsed[0] != key:
                    if key is not None:
                        yield _sample(path, name, key, members)
                    key, members = parsed[0], {}
                    if key in seen:
                        yield Skipped(f"{name}:{member.name}", "bad_member", "key repeated later in the tar")
                        key = None
                        continue
                    seen.add(key)
                if key is not None:
                    members[parsed[1].lower()] = Blob(str(path), member.offset_data, member.size)
    except (tarfile.TarError, OSError) as e:
        yield Skipped(name, "unreadable", f"not a readable uncompressed tar: {e}")
    if key is not None:
        yield _sample(path, name, key, members)


def split_member(name: str) -> tuple[str, str] | None:
    """(key, extension) of a safe member name, or None: folders must be plain names, never `..` or absolute."""
    *folders, base = name.removeprefix("./").split("/")
    match = MEMBER_RE.match(base)
    if match is None or not all(FOLDER_RE.match(folder) for folder in folders):
        return None
    return "/".join([*folders, match["key"]]), match["ext"]


def _sample(path: Path, name: str, key: str, members: dict[str, Blob]) -> SourceItem | Skipped:
    image = next((members[ext] for ext in IMAGE_EXTS if ext in members), None)
    if image is None:
        return Skipped(f"{name}:{key}", "no_image", f"members {', '.join(sorted(members))} hold no image")
    return SourceItem(source=f"{name}:{key}", image=image, seg=members.get("seg.png"),
                      captions_file=members.get("txt"))
