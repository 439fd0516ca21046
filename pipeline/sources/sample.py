"""The built-in sample's layout (pipeline/sample.py): images/<name>.<ext>, and for the drawn landscapes
seg/<name>.png (COCO-Stuff class ids) and captions/<name>.txt. The photos have neither."""
from collections.abc import Iterator
from pathlib import Path

from . import Blob, SourceItem, image_files, require_dir


def fits(root: Path) -> bool:
    """A folder with an images/ folder."""
    return (root / "images").is_dir()


def items(root: Path) -> Iterator[SourceItem]:
    """Every picture of the sample with the labels and captions drawn with it."""
    images = require_dir(root / "images", "the sample's images/ folder (run `pipeline sample` first)")
    for path in image_files(images):
        seg, captions = root / "seg" / f"{path.stem}.png", root / "captions" / f"{path.stem}.txt"
        yield SourceItem(
            source=path.relative_to(root).as_posix(),
            image=Blob(str(path)),
            seg=Blob(str(seg)) if seg.is_file() else None,
            captions_file=Blob(str(captions)) if captions.is_file() else None,
        )
