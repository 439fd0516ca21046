"""The model side of `pipeline generate`: decoded conditions brought to the generator as training brought its
samples, K images drawn from G_ema under exactly the given modalities, written as PNGs with a JSON record."""
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from annotators.labelmaps import IGNORE
from shardio.modalities import MODEL_MODALITIES
from shardio.shards import atomic_path

from .data import resizer, to_device
from .evaluate import to_uint8
from .noise import private_noise

RECORD = "generate.json"


class GenerateError(ValueError):
    """Conditions the model cannot take; the message names the file or option and what to do."""


@dataclass(frozen=True)
class Given:
    """The conditions a person gave, decoded; None where not given. text: CLIP text embedding float [D]; seg:
    uint8 class ids [H, W] (255 = ignore); sketch: uint8 [H, W], 255 = stroke; style: uint8 RGB [H, W, 3]. The
    spatial ones share one size, as a training sample's image, seg.png and sketch.png do."""

    text: np.ndarray | None = None
    seg: np.ndarray | None = None
    sketch: np.ndarray | None = None
    style: np.ndarray | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        """The given modalities, in MODEL_MODALITIES order."""
        return tuple(m for m in MODEL_MODALITIES if getattr(self, m) is not None)


def class_ids_outside(labels: np.ndarray, num_classes: int) -> list[int]:
    """The ids of `labels` that are neither a class of a `num_classes` label map nor 255 (ignore)."""
    ids = np.unique(labels)
    return [int(i) for i in ids if i >= num_classes and i != IGNORE]


def _to_resolution(array: np.ndarray, resolution: int, fit: str, resample) -> np.ndarray:
    """`array` brought to resolution x resolution by the training resize of `fit`, then cropped at the centre
    (training crops at random; a person asking for an image gets the middle of the picture)."""
    image = resizer(fit)(Image.fromarray(array), resolution, resample)
    x, y = (image.width - resolution) // 2, (image.height - resolution) // 2
    return np.asarray(image.crop((x, y, x + resolution, y + resolution)))


def condition_batch(given: Given, resolution: int, num_classes: int, text_dim: int, fit: str) -> tuple[dict, dict]:
    """(batch, masks) of one sample as the training loader gives it (image in [-1, 1], seg as uint8 class ids,
    sketch in [0, 1], text float32; `sample` makes it one-hot on the device), with zeros (seg: 255, ignore) where a
    modality is absent and the masks saying which are given. Images resize bilinearly and maps by nearest
    neighbour, as in `make_example`."""
    r = resolution
    batch = {"image": torch.zeros(1, 3, r, r), "seg": torch.full((1, r, r), IGNORE, dtype=torch.uint8),
             "sketch": torch.zeros(1, 1, r, r), "text": torch.zeros(1, text_dim)}
    if given.style is not None:
        style = _to_resolution(given.style, r, fit, Image.BILINEAR)
        batch["image"] = torch.from_numpy(style.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    if given.seg is not None:
        batch["seg"] = torch.from_numpy(_to_resolution(given.seg, r, fit, Image.NEAREST).copy())[None]
    if given.sketch is not None:
        sketch = _to_resolution(given.sketch, r, fit, Image.BILINEAR)
        batch["sketch"] = torch.from_numpy(sketch.copy()).float()[None, None] / 255
    if given.text is not None:
        batch["text"] = torch.from_numpy(given.text.astype(np.float32))[None]
    masks = {m: torch.tensor([m in given.modalities]) for m in MODEL_MODALITIES}
    return batch, masks


@torch.no_grad()
def sample(G, batch: dict, masks: dict, seed: int, n: int, device, num_classes: int) -> np.ndarray:
    """uint8 [n, H, W, 3]: n images of G for one condition (`condition_batch`'s, copied to `device` once, the
    segmentation made one-hot there), one forward each, the noise drawn in turn from a private generator seeded
    with `seed` (the same on every device), so image i does not depend on n."""
    batch = to_device(batch, device, num_classes)
    masks = {k: v.to(device) for k, v in masks.items()}
    images = []
    with private_noise(seed):
        for _ in range(n):
            image, _ = G(batch, masks)
            images.append(to_uint8(image))
    return np.concatenate(images)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_images(out: Path, images: np.ndarray, record: dict) -> list[Path]:
    """Write image-0000.png ... and generate.json (`record` plus each image's file and sha256), each atomically;
    returns the paths written."""
    paths, listed = [], []
    for index, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        path = Path(out) / f"image-{index:04d}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())
        paths.append(path)
        listed.append({"file": path.name, "sha256": sha256(buffer.getvalue())})
    with atomic_path(Path(out) / RECORD) as tmp:
        tmp.write_text(json.dumps({**record, "images": listed}, indent=1, sort_keys=True) + "\n")
    return paths + [Path(out) / RECORD]
