"""A directory tree of images, recursive: jpg, jpeg, png, webp, bmp, tif, tiff in any letter case."""
from collections.abc import Iterator
from pathlib import Path

from . import Blob, SourceItem, image_files, require_dir


def fits(root: Path) -> bool:
    """Any folder."""
    return root.is_dir()


def items(root: Path) -> Iterator[SourceItem]:
    """Every image file under `root`, named by its path relative to `root`."""
    for path in image_files(require_dir(root, "image folder")):
        yield SourceItem(source=path.relative_to(root).as_posix(), image=Blob(str(path)))
