"""Existing WebDataset tar shards, given as a brace pattern (`raw/wds/shard-{000000..000009}.tar`).

Members must be plain files named `<key>.<ext>` (the checked names of pipeline.shards); links, folders and any
other name are skipped as `bad_member` and never followed. A sample's image is its first member with an image
extension; `seg.png` is its provided segmentation and `txt` its captions. Uncompressed tars only (members are
read in place by offset)."""
import tarfile
from collections.abc import Iterator
from pathlib import Path

from braceexpand import braceexpand

from ..shards import MEMBER_RE
from . import IMAGE_SUFFIXES, Blob, Skipped, SourceError, SourceItem

IMAGE_EXTS = tuple(suffix[1:] for suffix in IMAGE_SUFFIXES)


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
                match = MEMBER_RE.match(member.name)
                if not member.isfile() or match is None:
                    yield Skipped(f"{name}:{member.name}", "bad_member", "not a plain `<key>.<ext>` file")
                    continue
                if match["key"] != key:
                    if key is not None:
                        yield _sample(path, name, key, members)
                    key, members = match["key"], {}
                    if key in seen:
                        yield Skipped(f"{name}:{member.name}", "bad_member", "key repeated later in the tar")
                        key = None
                        continue
                    seen.add(key)
                if key is not None:
                    members[match["ext"].lower()] = Blob(str(path), member.offset_data, member.size)
    except (tarfile.TarError, OSError) as e:
        yield Skipped(name, "unreadable", f"not a readable uncompressed tar: {e}")
    if key is not None:
        yield _sample(path, name, key, members)


def _sample(path: Path, name: str, key: str, members: dict[str, Blob]) -> SourceItem | Skipped:
    image = next((members[ext] for ext in IMAGE_EXTS if ext in members), None)
    if image is None:
        return Skipped(f"{name}:{key}", "no_image", f"members {', '.join(sorted(members))} hold no image")
    return SourceItem(source=f"{name}:{key}", image=image, seg=members.get("seg.png"),
                      captions_file=members.get("txt"))
