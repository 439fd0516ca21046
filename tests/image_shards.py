"""Builds small image shards in the ingest contract's format (docs/architecture.md) for the annotate/pack/preview
tests."""
import json

import cv2
import numpy as np

from annotators.base import encode
from shardio.layout import Layout, shard_name
from shardio.shards import class_counts, fingerprint, read_shard, read_stats, shard_writer, write_stats


def jpeg(seed: int, width: int = 40, height: int = 32) -> bytes:
    """A deterministic RGB JPEG with smooth colour regions (an edge map and a segmentation find structure)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def label_map(seed: int, width: int = 40, height: int = 32) -> np.ndarray:
    """A uint8 class-id map (COCO-Stuff ids, some 255 = ignore)."""
    labels = np.full((height, width), 255, np.uint8)
    labels[: height // 2] = 156 + seed % 3  # sky-ish ids
    labels[height // 2:, : width // 2] = 0
    return labels


def write_image_shards(layout: Layout, per_shard: list[int], provided_every: int = 3, split: str = "train",
                       size: tuple[int, int] = (40, 32)) -> list[str]:
    """Write image shards with per_shard[i] samples of `size` (w, h) each; every `provided_every`-th sample
    carries its own segmentation and captions (`provided: [seg, txt]`). Returns all keys in order."""
    width, height = size
    keys, n = [], 0
    for index, count in enumerate(per_shard):
        path = layout.images / shard_name(split, index)
        seg_classes = {}
        with shard_writer(path) as writer:
            for _ in range(count):
                key = f"{n:024x}"
                sample = {"__key__": key, "jpg": jpeg(n, width, height)}
                provided = []
                if n % provided_every == 0:
                    labels = label_map(n, width, height)
                    sample["seg.png"] = cv2.imencode(".png", labels)[1].tobytes()
                    seg_classes[key] = class_counts(labels)  # what ingest records
                    sample["txt"] = f"a picture number {n}\nanother caption {n}".encode()
                    provided = ["seg", "txt"]
                info = {"key": key, "source": f"raw/{n}.jpg", "width": width, "height": height, "split": split,
                        "provided": provided}
                sample["json"] = json.dumps(info).encode()
                writer.write(sample)
                keys.append(key)
                n += 1
        write_stats(path, {"fingerprint": fingerprint("test-ingest", index, count), "count": count,
                           "seg_classes": seg_classes})
    return keys


DIM = 8
META = {"seg": {"model": "seg-test", "weights_sha256": "a" * 64},
        "sketch": {"model": "hed-test", "weights_sha256": "b" * 64},
        "clip": {"model": "clip-test", "weights_sha256": "c" * 64}}


def _annotation(name: str, n: int, captions: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    if name == "seg":
        return {"seg.png": np.full((32, 40), n % 5, np.uint8)}
    if name == "sketch":
        return {"sketch.png": (rng.random((32, 40)) > 0.8).astype(np.uint8) * 255}
    vector = rng.normal(size=DIM)
    out = {"clip.npy": (vector / np.linalg.norm(vector)).astype(np.float16)}
    if captions:
        text = rng.normal(size=(captions, DIM))
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        out["clip_text.npy"] = text.astype(np.float16)
    return out


def write_annotations(layout: Layout, name: str, skip: set[str] = frozenset(), fp: str = "fp1",
                      worker: dict | None = None) -> None:
    """Annotation shards of `name` aligned with the image shards as they are now (provided seg skipped, `skip`
    keys failed); `worker`: the stats' record of where they were made (none: as before annotate recorded it).
    Their stats record the class counts of seg outputs, as annotate's do."""
    for image_shard in sorted(layout.images.glob("*.tar")):
        out = layout.annotations(name) / image_shard.name
        seg_classes = {}
        with shard_writer(out) as writer:
            for key, sample in read_shard(image_shard):
                info = json.loads(sample["json"])
                if key in skip or name in info["provided"]:
                    continue
                captions = len(sample["txt"].decode().splitlines()) if "txt" in sample else 0
                outputs = _annotation(name, int(key, 16), captions)
                writer.write({"__key__": key, **{ext: encode(ext, array) for ext, array in outputs.items()}})
                if "seg.png" in outputs:
                    seg_classes[key] = class_counts(outputs["seg.png"])
        stats = {"fingerprint": fp, "metadata": META[name], "image_fingerprint": read_stats(image_shard)["fingerprint"],
                 "seg_classes": seg_classes}
        write_stats(out, {**stats, "worker": worker} if worker else stats)
