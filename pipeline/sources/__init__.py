"""Raw collections ingest can read. Each source kind is one module with `items(root) -> Iterator[SourceItem |
Skipped]`, listing images (and where their provided segmentation, sketch and captions are) without decoding anything.

Items are small picklable records; worker processes read the bytes through them. `item_to_json` /
`item_from_json` keep them on disk (ingest's scan table) instead of in memory."""
import hashlib
import importlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from shardio.shards import fingerprint
from ..imageio import Rejected, decode_labels, decode_sketch
from ..params.datasets import SOURCE_KINDS as KINDS  # kind -> module in this package

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# Kinds tried, in order, for a path whose kind is not given and does not fit the profile's kind.
INFERRED_KINDS = ("webdataset", "list", "folder")


class SourceError(ValueError):
    """A source that cannot be listed at all (missing root, missing annotation file); names the path."""


@dataclass(frozen=True)
class Blob:
    """Bytes in a file: the whole file, or `size` bytes at `offset` (a tar member)."""

    path: str
    offset: int = 0
    size: int = -1

    def nbytes(self) -> int:
        """How many bytes `read` would return (OSError if the file is gone)."""
        return self.size if self.size >= 0 else Path(self.path).stat().st_size

    def read(self) -> bytes:
        """The bytes; a short read (truncated container) raises OSError."""
        with open(self.path, "rb") as f:
            if self.size < 0:
                return f.read()
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self.path}: {self.size} bytes expected at {self.offset}, found {len(data)}")
        return data


@dataclass(frozen=True)
class SourceItem:
    """One raw image: its name in the manifest, its bytes, and what the source provides with it."""

    source: str
    image: Blob
    split: str | None = None
    seg: Blob | None = None
    sketch: Blob | None = None
    captions: tuple[str, ...] = ()
    captions_file: Blob | None = None

    def read_seg(self, max_pixels: int) -> np.ndarray | None:
        """The provided class-id map on the image's stored pixel grid, or None; unusable -> Rejected."""
        if self.seg is None:
            return None
        return decode_labels(read_blob(self.seg, "bad_seg"), max_pixels)

    def read_sketch(self, max_pixels: int) -> np.ndarray | None:
        """The provided stroke map (uint8, 255 = stroke) on its own pixel grid, or None; unusable -> Rejected."""
        if self.sketch is None:
            return None
        return decode_sketch(read_blob(self.sketch, "bad_sketch"), max_pixels)

    def provided_files(self) -> tuple[Blob, ...]:
        """The files the provided modalities are read from (their bytes decide whether a shard is current)."""
        return tuple(blob for blob in (self.seg, self.sketch, self.captions_file) if blob is not None)

    def read_captions(self) -> list[str]:
        """Provided captions, one per entry, blank lines dropped."""
        lines = list(self.captions)
        if self.captions_file is not None:
            lines += read_blob(self.captions_file, "bad_txt").decode("utf-8", errors="replace").splitlines()
        return [line.strip() for line in lines if line.strip()]

    @classmethod
    def from_record(cls, record: dict) -> "SourceItem":
        """The item from its JSON record (see `item_to_json`)."""
        fields = dict(record)
        for name in ("image", "seg", "sketch", "captions_file"):
            if fields.get(name) is not None:
                fields[name] = Blob(**fields[name])
        fields["captions"] = tuple(fields.get("captions", ()))
        return cls(**fields)


@dataclass(frozen=True)
class Skipped:
    """An entry a source lists but cannot offer as an image (missing file, odd tar member)."""

    source: str
    reason: str
    detail: str = ""


def provided_digest(item: SourceItem) -> str:
    """A hash of the inline captions and of every provided file's bytes (a missing file hashes as missing)."""
    digest = hashlib.sha256("\n".join(item.captions).encode())
    for blob in item.provided_files():
        try:
            data = blob.read()
        except OSError:
            data = b"missing"
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()[:16]


def item_to_json(item: SourceItem) -> str:
    """The item as one JSON line, naming its class (a source's own subclass of SourceItem)."""
    kind = f"{type(item).__module__}:{type(item).__name__}"
    return json.dumps({"type": kind, **asdict(item)}, sort_keys=True, separators=(",", ":"))


def item_from_json(text: str) -> SourceItem:
    """The item `item_to_json` wrote; only classes of this package are ever looked up."""
    record = json.loads(text)
    module, _, name = record.pop("type").partition(":")
    if module != __name__ and not module.startswith(f"{__name__}."):
        raise ValueError(f"not a source item class: {module}:{name}")
    return getattr(importlib.import_module(module), name).from_record(record)


def item_stamp(item: SourceItem, *extra) -> str:
    """A hash of what the item is (its JSON: paths, offsets, inline captions), the size and modification time of
    each of its files, and `extra`: equal stamps mean a file need not be read again to know its hashes."""
    files = []
    for blob in (item.image, *item.provided_files()):
        try:
            stat = os.stat(blob.path)
            files.append([stat.st_size, stat.st_mtime_ns])
        except OSError:
            files.append(None)
    return fingerprint(item_to_json(item), files, *extra)


def read_blob(blob: Blob, reason: str) -> bytes:
    """The blob's bytes; an unreadable file is Rejected with `reason`."""
    try:
        return blob.read()
    except OSError as e:
        raise Rejected(reason, f"cannot read {blob.path}: {e.strerror or e}") from None


def list_items(kind: str, root: Path) -> Iterator[SourceItem | Skipped]:
    """Everything the source of `kind` at `root` lists; SourceError if it cannot be listed."""
    if kind not in KINDS:
        raise SourceError(f"unknown source kind {kind!r}; known: {', '.join(KINDS)}")
    module = importlib.import_module(f"{__name__}.{KINDS[kind]}")
    return module.items(root)


def fits(kind: str, root: Path) -> bool:
    """True if the path looks like a source of `kind` (checked before anything is listed)."""
    return importlib.import_module(f"{__name__}.{KINDS[kind]}").fits(root)


def infer_kind(root: Path) -> str | None:
    """The first kind of INFERRED_KINDS that fits the path (a tar pattern, an image list, a folder), or None."""
    return next((kind for kind in INFERRED_KINDS if fits(kind, root)), None)


def image_files(directory: Path) -> Iterator[Path]:
    """Image files under `directory`, recursively, any letter case, folder by folder in name order (one folder's
    names in memory at a time); hidden files and folders skipped, symbolic links to folders not followed."""
    for folder, subfolders, names in os.walk(directory):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(names):
            path = Path(folder, name)
            if path.suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".") and path.is_file():
                yield path


def require_dir(path: Path, what: str) -> Path:
    """`path` if it is a directory, else SourceError saying what was expected there."""
    if not path.is_dir():
        raise SourceError(f"{path}: {what} not found (expected a directory)")
    return path
