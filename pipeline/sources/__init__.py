"""Raw collections ingest can read. Each source kind is one module with `items(root) -> Iterator[SourceItem |
Skipped]`, listing images (and where their provided segmentation, sketch and captions are) without decoding anything.

Items are small picklable records; worker processes read the bytes through them."""
import hashlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..imageio import Rejected, decode_labels, decode_sketch

# Source kind (params: datasets.<name>.source.kind) -> module in this package.
KINDS = {
    "sample": "sample",
    "folder": "folder",
    "list": "filelist",
    "webdataset": "tars",
    "coco": "coco",
    "mm-celeba-hq": "celeba",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


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


def image_files(directory: Path) -> list[Path]:
    """Image files under `directory`, recursively, any letter case; hidden files and folders skipped."""
    found = []
    for path in directory.rglob("*"):
        parts = path.relative_to(directory).parts
        if path.suffix.lower() in IMAGE_SUFFIXES and not any(p.startswith(".") for p in parts) and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def require_dir(path: Path, what: str) -> Path:
    """`path` if it is a directory, else SourceError saying what was expected there."""
    if not path.is_dir():
        raise SourceError(f"{path}: {what} not found (expected a directory)")
    return path
