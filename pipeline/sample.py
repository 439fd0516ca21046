"""The built-in sample dataset: procedurally drawn landscapes with exact labels and captions, plus the real
photographs that ship inside installed packages. No network, nothing committed, byte-deterministic.

Layout written (the `sample` source kind reads it; a `folder` source would read just `images/`):
    images/<name>.jpg|png    the pictures
    seg/<name>.png           uint8 COCO-Stuff class ids at the picture's size (drawn landscapes only)
    captions/<name>.txt      one caption per line (drawn landscapes only)
"""
import io
import shutil
from importlib import resources
from pathlib import Path

import cv2
from PIL import Image
from tqdm import tqdm

from .landscapes import SIZES, draw_landscape
from .params.stages import SampleParams

# Real photographs shipped as files inside installed packages: (package, path inside it).
PHOTOS = [
    ("skimage", "data/astronaut.png"), ("skimage", "data/chelsea.png"), ("skimage", "data/coffee.png"),
    ("skimage", "data/rocket.jpg"), ("skimage", "data/motorcycle_left.png"), ("skimage", "data/camera.png"),
    ("sklearn", "datasets/images/china.jpg"), ("sklearn", "datasets/images/flower.jpg"),
]


def write_sample(out: Path, params: SampleParams, progress: bool = True) -> dict:
    """Write the sample under `out` (replaced atomically when complete); return counts."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("images", "seg", "captions"):
        (tmp / sub).mkdir(parents=True)
    for i in tqdm(range(params.landscapes), desc="sample", unit="img", disable=not progress):
        name = f"landscape-{i:03d}"
        drawn = draw_landscape(params.seed, i, SIZES[i % len(SIZES)])
        # Mostly JPEG like real collections, every fourth a PNG so both decoders are exercised.
        fmt = "png" if i % 4 == 3 else "jpg"
        (tmp / "images" / f"{name}.{fmt}").write_bytes(_encode(drawn.image, fmt))
        (tmp / "seg" / f"{name}.png").write_bytes(cv2.imencode(".png", drawn.labels)[1].tobytes())
        (tmp / "captions" / f"{name}.txt").write_text(drawn.caption + "\n")
    photos = PHOTOS if params.include_photos else []
    for package, inner in photos:
        src = resources.files(package).joinpath(inner)
        (tmp / "images" / f"photo-{Path(inner).name}").write_bytes(src.read_bytes())
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return {"landscapes": params.landscapes, "photos": len(photos)}


def _encode(rgb, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpg":
        Image.fromarray(rgb).save(buf, "JPEG", quality=92)
    else:
        buf.write(cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes())
    return buf.getvalue()
