"""Image bytes of every awkward kind ingest must handle, and tiny raw trees in the public datasets' layouts."""
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from shardio.layout import Layout
from pipeline.params.datasets import SourceParams
from pipeline.params.stages import IngestParams

LIMITS = IngestParams(min_size=32, max_pixels=4_000_000, max_aspect=4.0, max_short_side=96, jpeg_quality=90,
                      shard_size=4)


def picture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB picture with some texture: distinct per seed, compresses like a photo."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                     np.full_like(x, (seed * 37) % 256)], -1)
    return np.clip(base + rng.integers(-6, 7, (height, width, 3)), 0, 255).astype(np.uint8)


def encode(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def jpeg(width: int = 80, height: int = 60, seed: int = 0) -> bytes:
    return encode(picture(width, height, seed), "JPEG", quality=90)


def cmyk_jpeg(seed: int = 1) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture(64, 48, seed)).convert("CMYK").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def ramp16() -> np.ndarray:
    """A 48x64 uint16 gray ramp spanning the full 16-bit range."""
    return np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)


def png16() -> bytes:
    """A 16-bit gray PNG of `ramp16`."""
    buffer = io.BytesIO()
    Image.fromarray(ramp16()).save(buffer, "PNG")
    return buffer.getvalue()


def palette_png_with_transparency() -> bytes:
    """A palette PNG: index 0 transparent (left half), index 1 pure red (right half)."""
    indices = np.zeros((48, 64), np.uint8)
    indices[:, 32:] = 1
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=0)
    return buffer.getvalue()


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """A 80x40 JPEG (left half black, right half white) whose EXIF says to rotate it to stand upright."""
    array = np.zeros((40, 80, 3), np.uint8)
    array[:, 40:] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=95, exif=exif)
    return buffer.getvalue()


def gray_jpeg() -> bytes:
    return encode(picture(64, 48, 3)[..., 0], "JPEG", quality=90)


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A PNG whose header claims width x height; its data is a few bytes (never to be decoded)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def labels_png(labels: np.ndarray) -> bytes:
    return encode(labels.astype(np.uint8), "PNG")


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def read_table(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def folder_source(path: Path) -> SourceParams:
    return SourceParams(kind="folder", path=str(path))


def outputs(layout: Layout) -> dict[str, bytes]:
    """Every file ingest wrote for a dataset, by path relative to its folder (not the lock files of its runs)."""
    return {p.relative_to(layout.root).as_posix(): p.read_bytes() for p in sorted(layout.root.rglob("*"))
            if p.is_file() and p.suffix != ".lock"}


def coco_tree(root: Path) -> None:
    """Two train images and one val image in the COCO 2017 + COCO-Stuff layout, with captions."""
    for folder, ids in (("train2017", [9, 25]), ("val2017", [139])):
        images, annotations = [], []
        for n, image_id in enumerate(ids):
            name = f"{image_id:012d}.jpg"
            write(root / folder / name, jpeg(120, 80, seed=image_id))
            labels = np.full((80, 120), 255, np.uint8)
            labels[:, :60] = 0      # person
            labels[:, 60:] = 156    # sky-other
            write(root / "stuffthingmaps_trainval2017" / folder / f"{image_id:012d}.png", labels_png(labels))
            images.append({"id": image_id, "file_name": name, "width": 120, "height": 80})
            for c in range(6):  # one more than COCO keeps
                annotations.append({"id": 1000 * image_id + 10 - c, "image_id": image_id,
                                    "caption": f"caption {c} of  image {image_id}\n"})
        write(root / "annotations" / f"captions_{folder}.json",
              json.dumps({"images": images, "annotations": annotations}).encode())


def celeba_tree(root: Path, indices=(0, 1, 24000), sketches: bool = False) -> None:
    """Faces in the CelebAMask-HQ layout (1024-px images scaled down to 128, masks at half size) plus text/ and,
    with `sketches`, MM-CelebA-HQ's sketch/ (half size, like its 512-px sketches of 1024-px faces)."""
    for i in indices:
        write(root / "CelebA-HQ-img" / f"{i}.jpg", jpeg(128, 128, seed=i))
        folder = root / "CelebAMask-HQ-mask-anno" / str(i // 2000)
        skin = np.zeros((64, 64, 3), np.uint8)
        skin[8:56, 8:56] = 255
        hair = np.zeros((64, 64, 3), np.uint8)
        hair[0:20, :] = 255          # overlaps the skin: hair (painted later) must win
        write(folder / f"{i:05d}_skin.png", encode(skin, "PNG"))
        write(folder / f"{i:05d}_hair.png", encode(hair, "PNG"))
        write(root / "text" / f"{i}.txt", f"face {i} smiles.\nface {i} has hair.\n".encode())
        if sketches:
            write(root / "sketch" / f"{i}.png", encode(face_sketch(), "PNG"))


def face_sketch() -> np.ndarray:
    """A 64 x 64 drawing as MM-CelebA-HQ ships them: dark lines on white, with light-grey anti-aliasing."""
    drawing = np.full((64, 64), 255, np.uint8)
    drawing[10, 8:56] = 0        # a one-pixel line
    drawing[11, 8:56] = 200      # its anti-aliased fringe: lighter than mid-grey, not a stroke
    drawing[20:60, 40] = 30      # a dark-grey line
    return drawing


def params_file(directory: Path, ingest: dict | None = None, datasets: dict | None = None,
                landscapes: int = 3) -> Path:
    """A minimal params file: the sample profile (plus `datasets`), a small sample, and these ingest params."""
    import yaml
    profiles = {"sample": {"source": {"kind": "sample", "path": "raw/sample"}, "test_size": 0.2}, **(datasets or {})}
    params = {"dataset": "sample", "sample": {"landscapes": landscapes, "seed": 0, "include_photos": True},
              "ingest": ingest or {}, "datasets": profiles}
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path
