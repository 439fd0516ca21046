"""Tiny training shards in the contract's format, drawn from the built-in sample's landscapes (exact labels).
Shared by the train tests and benchmarks/training.py."""
import io
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pipeline.landscapes import draw_landscape
from shardio.layout import shard_name
from shardio.shards import fingerprint, shard_writer, write_stats

CLIP_DIM = 512


def _png(array: np.ndarray) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _unit(rng, *shape) -> np.ndarray:
    v = rng.standard_normal(shape)
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float16)


def drawn_sample(index: int, short_side: int, seed: int = 0):
    """(rgb, labels, sketch) of landscape `index`, resized so its short side is `short_side`."""
    drawn = draw_landscape(seed, index, (640, 480) if index % 2 else (480, 640))
    h, w = drawn.labels.shape
    size = (round(w * short_side / min(h, w)), round(h * short_side / min(h, w)))
    rgb = cv2.resize(drawn.image, size, interpolation=cv2.INTER_AREA)
    labels = cv2.resize(drawn.labels, size, interpolation=cv2.INTER_NEAREST)
    edges = np.zeros_like(labels)
    edges[:-1] |= labels[:-1] != labels[1:]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return rgb, labels, (edges * 255).astype(np.uint8), drawn.caption


def write_training_shards(shards_dir: Path, images: int = 8, per_shard: int = 4, short_side: int = 40,
                          split: str = "train", captions: bool = True, seed: int = 0,
                          jpeg_quality: int = 95, clip_dim: int = CLIP_DIM,
                          annotators: dict | None = None) -> list[Path]:
    """Write `images` samples as {split}-NNNNNN.tar training shards with their markers, as pack does (CLIP
    embeddings `clip_dim` wide; `annotators`: the record pack puts in each json, e.g. which CLIP model made them);
    returns the shard paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for start in range(0, images, per_shard):
        path = Path(shards_dir) / shard_name(split, start // per_shard)
        with shard_writer(path) as writer:
            for i in range(start, min(start + per_shard, images)):
                rgb, labels, sketch, caption = drawn_sample(i, short_side, seed)
                buf = io.BytesIO()
                Image.fromarray(rgb).save(buf, "JPEG", quality=jpeg_quality)
                key = f"{split}{i:06d}"
                sample = {"__key__": key, "jpg": buf.getvalue(), "seg.png": _png(labels),
                          "sketch.png": _png(sketch), "clip.npy": _npy(_unit(rng, clip_dim)),
                          "json": json.dumps({"key": key, "source": "sample", "size": [rgb.shape[1], rgb.shape[0]],
                                              "split": split, "label_map": "coco-stuff-182",
                                              **({"annotators": annotators} if annotators else {})}).encode()}
                if captions:
                    sample["txt"] = (caption + "\n").encode()
                    sample["clip_text.npy"] = _npy(_unit(rng, 2, clip_dim))
                writer.write(sample)
        write_stats(path, {"fingerprint": fingerprint("test-pack", split, start, per_shard, images, seed), "samples":
                           min(per_shard, images - start), "image_shard": path.name})  # pack's marker
        paths.append(path)
    return paths


def write_sample_shards(data: Path, train: int = 4, test: int = 4) -> None:
    """The `sample` dataset's train and test shards (36 px, 4 samples a shard; the test split drawn with another
    seed) under the data dir `data`, as a trained run's evaluation reads them."""
    for split, images, seed in (("train", train, 0), ("test", test, 1)):
        write_training_shards(data / "sample" / "shards", images=images, per_shard=4, short_side=36, split=split,
                              seed=seed)
