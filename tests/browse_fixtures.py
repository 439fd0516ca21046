"""A small packed dataset of the sample's drawn landscapes for the browser tests: image shards in ingest's format
(even samples carry their exact segmentation), annotation shards (segmentation of the others and CLIP made with
random weights, HED sketches with real ones; one sketch failed), ingest's rejects, then `pipeline pack`."""
import json

import cv2
import numpy as np
import pyarrow as pa
import yaml
from click.testing import CliRunner

from annotators.base import encode
from pipeline.cli import main
from pipeline.ingest import REJECTS_SCHEMA, write_table
from shardio.layout import Layout, shard_name
from shardio.shards import class_counts, fingerprint, read_shard, read_stats, shard_writer, write_stats
from train_shards import drawn_sample

RANDOM_META = {"model": "deeplabv2", "weights": "random", "sha256": "random"}
META = {"seg": RANDOM_META, "sketch": {"model": "hed-vgg16", "weights": "hed-bsds500-pypi", "sha256": "e" * 64},
        "clip": {"model": "ViT-B-32-quickgelu", "weights": "random", "sha256": "random"}}
NO_SKETCH, NO_CAPTION = 2, 5  # the sample whose sketch failed, the one without captions
REJECTS = [("raw/broken.jpg", "undecodable", "cannot identify image file"), ("raw/tiny.png", "too_small", "12x9"),
           ("raw/copy.jpg", "duplicate", "of raw/0.jpg")]


def _image_shards(layout: Layout, per_shard: list[int], short_side: int) -> list[str]:
    keys, n = [], 0
    for index, count in enumerate(per_shard):
        path, seg_classes = layout.images / shard_name("train", index), {}
        with shard_writer(path) as writer:
            for _ in range(count):
                rgb, labels, _, caption = drawn_sample(n, short_side)
                key = f"{n:024x}"
                sample = {"__key__": key, "jpg": cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes()}
                provided = []
                if n % 2 == 0:
                    sample["seg.png"] = encode("seg.png", labels)
                    provided.append("seg")
                    seg_classes[key] = class_counts(labels)
                if n != NO_CAPTION:
                    sample["txt"] = f"{caption}\nlandscape number {n}".encode()
                    provided.append("txt")
                info = {"key": key, "source": f"raw/{n}.jpg", "width": rgb.shape[1], "height": rgb.shape[0],
                        "split": "train", "provided": provided}
                writer.write({**sample, "json": json.dumps(info).encode()})
                keys.append(key)
                n += 1
        write_stats(path, {"fingerprint": fingerprint("browse-test", index, count), "count": count,
                           "seg_classes": seg_classes})
    return keys


def _annotation(name: str, n: int, sample: dict) -> dict[str, bytes]:
    rng = np.random.default_rng(n)
    rgb = cv2.imdecode(np.frombuffer(sample["jpg"], np.uint8), cv2.IMREAD_COLOR)
    h, w = rgb.shape[:2]
    if name == "seg":  # what untrained weights give: blotches of arbitrary classes
        blotches = rng.choice([96, 105, 123, 148], size=(4, 4)).astype(np.uint8)
        return {"seg.png": encode("seg.png", cv2.resize(blotches, (w, h), interpolation=cv2.INTER_NEAREST))}
    if name == "sketch":
        return {"sketch.png": encode("sketch.png", cv2.Canny(rgb, 100, 200))}
    vectors = rng.normal(size=(1 + ("txt" in sample) * 2, 8))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)
    out = {"clip.npy": encode("clip.npy", vectors[0])}
    return {**out, "clip_text.npy": encode("clip_text.npy", vectors[1:])} if "txt" in sample else out


def packed_landscapes(tmp_path, per_shard=(3, 3, 2), short_side: int = 160) -> tuple[Layout, list[str], list[str]]:
    """(layout, keys, CLI args --dataset/--params/--data-dir) of a packed dataset of drawn landscapes."""
    layout = Layout(tmp_path / "data", "sample")
    keys = _image_shards(layout, list(per_shard), short_side)
    for name in ("seg", "sketch", "clip"):
        for image_shard in sorted(layout.images.glob("*.tar")):
            out = layout.annotations(name) / image_shard.name
            seg_classes = {}
            with shard_writer(out) as writer:
                for key, sample in read_shard(image_shard):
                    n = int(key, 16)
                    if (name == "seg" and "seg.png" in sample) or (name == "sketch" and n == NO_SKETCH):
                        continue
                    members = _annotation(name, n, sample)
                    writer.write({"__key__": key, **members})
                    if "seg.png" in members:
                        decoded = cv2.imdecode(np.frombuffer(members["seg.png"], np.uint8), cv2.IMREAD_UNCHANGED)
                        seg_classes[key] = class_counts(decoded)
            write_stats(out, {"fingerprint": f"{name}-fp", "metadata": META[name], "seg_classes": seg_classes,
                              "image_fingerprint": read_stats(image_shard)["fingerprint"]})
    rejects = [(*reject, None, None, None) for reject in REJECTS]  # no hash, stamp or provided files recorded
    write_table(pa.Table.from_pylist([dict(zip(REJECTS_SCHEMA.names, r)) for r in rejects], REJECTS_SCHEMA),
                layout.rejects)
    values = yaml.safe_load(open("params.yaml"))
    values["pack"]["workers"] = 1
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(values))
    args = ["--dataset", "sample", "--params", str(params), "--data-dir", str(layout.data_dir)]
    result = CliRunner().invoke(main, ["pack", *args, "--no-progress"])
    assert result.exit_code == 0, result.output
    return layout, keys, args
