"""CelebAMask-HQ / MM-CelebA-HQ:

    CelebA-HQ-img/<i>.jpg                                        30,000 faces, i = 0..29999
    CelebAMask-HQ-mask-anno/<i // 2000>/<i:05d>_<part>.png       one binary mask per face part (512 x 512)
    text/<i>.txt                                                 MM-CelebA-HQ's ten captions per face
    sketch/<i>.png                                               MM-CelebA-HQ's sketch per face (optional folder)

Part masks are painted in the order of the official merge script (switchablenorms/CelebAMask-HQ,
face_parsing/Data_preprocessing/g_mask.py: class = position in its label_list + 1, a later part overwrites an
earlier one, a pixel belongs to a part where the mask's first channel is non-zero, background 0), giving the
celebamask-hq-19 label map (annotators/labelmaps/celebamask-hq-19.csv; its colours are the official palette of
g_color.py in the same folder). Split: images 0..23999 train, 24000..29999 test, as the MM-CelebA-HQ release
defines it (IIGROUP/TediGAN issue #16 and IIGROUP/MM-CelebA-HQ-Dataset issue #6, answered by its author).

Sketches: the release's download table (IIGROUP/MM-CelebA-HQ-Dataset README.md up to commit 3705926, before the
links were removed in 39be4a5) lists `sketch/`: 30,000 PNG files beside `image/`, `label/` and `text/`, one per
face like the texts; they are Photoshop Photocopy edges simplified by sketch-simplification, dark lines on white
(the README's sample figure). The table gives no file names, so `<i>.png` follows `text/<i>.txt`; the
repository's create_sketch.py, which regenerates them, writes `<i>_edges.jpg`, also read. `sketch/` is a
separate download (sketch.zip): without the folder every face's sketch is pseudo-labelled; with it, a face
without its file is rejected (`bad_sketch`), since the release has one per face and a gap means a broken
extraction, which pseudo-labelling would hide by mixing HED sketches of another style into the modality."""
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..imageio import Rejected, decode_labels
from . import Blob, SourceItem, image_files, read_blob, require_dir

PARTS = ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip",
         "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")
TRAIN_IMAGES = 24_000
FOLDER_SIZE = 2_000
SKETCH_NAMES = ("{}.png", "{}_edges.jpg")  # release (inferred), create_sketch.py; the first is expected if none is


@dataclass(frozen=True)
class FaceItem(SourceItem):
    """A face whose segmentation is merged from per-part masks: (class id, mask) painted in order."""

    parts: tuple[tuple[int, Blob], ...] = ()

    def provided_files(self) -> tuple[Blob, ...]:
        """The part masks and the captions file."""
        return tuple(blob for _, blob in self.parts) + super().provided_files()

    def read_seg(self, max_pixels: int) -> np.ndarray:
        """The merged 19-class map; a face without any part mask is Rejected as bad_seg."""
        if not self.parts:
            raise Rejected("bad_seg", "no CelebAMask-HQ part mask for this face")
        merged = None
        for class_id, blob in self.parts:
            mask = decode_labels(read_blob(blob, "bad_seg"), max_pixels)
            if merged is None:
                merged = np.zeros(mask.shape, np.uint8)
            if mask.shape != merged.shape:
                raise Rejected("bad_seg", f"{blob.path}: {mask.shape} differs from the other part masks")
            merged[mask != 0] = class_id
        return merged

    @classmethod
    def from_record(cls, record: dict) -> "FaceItem":
        """The face from its JSON record: the part masks' blobs too."""
        parts = tuple((class_id, Blob(**blob)) for class_id, blob in record.get("parts", ()))
        return super().from_record({**record, "parts": parts})


def fits(root: Path) -> bool:
    """A folder with CelebA-HQ-img/."""
    return (root / "CelebA-HQ-img").is_dir()


def items(root: Path) -> Iterator[FaceItem]:
    """Every face image with its merged part masks, its sketch, its captions and the standard split."""
    images = require_dir(root / "CelebA-HQ-img", "CelebA-HQ-img/ folder")
    masks = require_dir(root / "CelebAMask-HQ-mask-anno", "CelebAMask-HQ-mask-anno/ folder")
    sketches = root / "sketch"
    for path in image_files(images):
        if not path.stem.isdigit():
            continue
        index = int(path.stem)
        folder = masks / str(index // FOLDER_SIZE)
        parts = tuple((class_id, Blob(str(mask))) for class_id, part in enumerate(PARTS, start=1)
                      if (mask := folder / f"{index:05d}_{part}.png").is_file())
        text = root / "text" / f"{index}.txt"
        yield FaceItem(
            source=path.relative_to(root).as_posix(),
            image=Blob(str(path)),
            split="train" if index < TRAIN_IMAGES else "test",
            captions_file=Blob(str(text)) if text.is_file() else None,
            sketch=Blob(str(sketch_file(sketches, index))) if sketches.is_dir() else None,
            parts=parts,
        )


def sketch_file(folder: Path, index: int) -> Path:
    """Face `index`'s sketch in `folder`: the first name of SKETCH_NAMES that exists, else the first."""
    paths = [folder / name.format(index) for name in SKETCH_NAMES]
    return next((path for path in paths if path.is_file()), paths[0])
