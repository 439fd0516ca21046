"""MS-COCO 2017 with COCO-Stuff label maps:

    train2017/*.jpg, val2017/*.jpg                                   images (val2017 becomes split `test`)
    annotations/captions_{train,val}2017.json                        captions (COCO keeps 5 per image)
    stuffthingmaps_trainval2017/{train,val}2017/<image stem>.png    segmentation

The stuff-thing maps store class ids 0-181 (COCO-Stuff id - 1) and 255 for unlabeled, exactly the
coco-stuff-182 label map (github.com/nightrome/cocostuff README, "Caffe-compatible stuff-thing maps")."""
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from . import Blob, SourceError, SourceItem, image_files, require_dir

SPLITS = {"train2017": "train", "val2017": "test"}
MAX_CAPTIONS = 5


def fits(root: Path) -> bool:
    """A folder with train2017/ or val2017/."""
    return any((root / folder).is_dir() for folder in SPLITS)


def items(root: Path) -> Iterator[SourceItem]:
    """Every image of the COCO splits present, with its captions and its stuff-thing map."""
    present = [folder for folder in SPLITS if (root / folder).is_dir()]
    if not present:
        raise SourceError(f"{root}: no COCO image folder ({' or '.join(SPLITS)}) found")
    for folder in present:
        captions = read_captions(root / "annotations" / f"captions_{folder}.json")
        maps = require_dir(root / "stuffthingmaps_trainval2017" / folder, f"COCO-Stuff label maps for {folder}")
        for path in image_files(root / folder):
            yield SourceItem(
                source=path.relative_to(root).as_posix(),
                image=Blob(str(path)),
                split=SPLITS[folder],
                seg=Blob(str(maps / f"{path.stem}.png")),
                captions=tuple(captions.get(path.name, ())),
            )


def read_captions(path: Path) -> dict[str, list[str]]:
    """File name -> its captions (at most 5, in annotation-id order) from a COCO captions file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names = {image["id"]: image["file_name"] for image in data["images"]}
        annotations = sorted(data["annotations"], key=lambda a: a["id"])
    except FileNotFoundError:
        raise SourceError(f"{path}: COCO captions file not found (from annotations_trainval2017.zip)") from None
    except (ValueError, KeyError, TypeError) as e:
        raise SourceError(f"{path}: not a COCO captions file ({type(e).__name__}: {e})") from None
    captions = defaultdict(list)
    for annotation in annotations:
        name = names.get(annotation["image_id"])
        if name is not None and len(captions[name]) < MAX_CAPTIONS:
            captions[name].append(" ".join(str(annotation["caption"]).split()))
    return captions
