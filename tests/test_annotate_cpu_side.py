"""A worker's CPU side: decoding, `prepare` and `finish` run on its thread pool and the model thread runs only
`forward`; reduced decoding hands each annotator an image no smaller than it declares, and the outputs stay at the
stored image's size."""
import io
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from annotators.base import InputSize, build
from pipeline.annotate import ShardJob, annotate_shard, decode_item, shard_fingerprint
from pipeline.params.annotate import ClipParams, SegParams, SketchParams
from shardio.layout import Layout, shard_name
from shardio.shards import read_shard, shard_writer, write_stats

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = [(1000, 500), (300, 450), (96, 64)]  # (w, h): reduced (by 2 for CLIP, more for small inputs), maybe, never


def photo_jpeg(width: int, height: int) -> bytes:
    image = cv2.resize(skimage.data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)[..., ::-1]
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def image_shard(folder: Path, sizes=SIZES) -> Path:
    path = Layout(folder, "x").images / shard_name("train", 0)
    with shard_writer(path) as writer:
        for i, (width, height) in enumerate(sizes):
            writer.write({"__key__": f"{i:04d}", "jpg": photo_jpeg(width, height), "txt": b"a photo",
                          "json": json.dumps({"provided": []}).encode()})
    write_stats(path, {"fingerprint": "images", "count": len(sizes)})
    return path


def recorded(name: str, section, folder: Path):
    """The real annotator `name`, set up on the CPU, logging (step, thread, image shape) of each step it runs."""
    base = type(build(name, section, folder))

    class Recorded(base):
        def __init__(self, *args):
            super().__init__(*args)
            self.log = []

        def prepare(self, item):
            self.log.append(("prepare", threading.get_ident(), item.image.shape, item.stored_size))
            return super().prepare(item)

        def forward(self, prepared):
            self.log.append(("forward", threading.get_ident(), None, None))
            return super().forward(prepared)

        def finish(self, raw):
            self.log.append(("finish", threading.get_ident(), None, None))
            return super().finish(raw)

    annotator = Recorded(section, folder)
    annotator.setup("cpu")
    return annotator


def run(annotator, shard: Path, folder: Path, threads: int = 2) -> dict[str, dict]:
    out = folder / annotator.name / shard.name
    stats = annotate_shard(annotator, ShardJob(shard, "images", out, "fp", len(SIZES)), batch_size=2, prefetch=2,
                           max_pixels=10**7, threads=threads)
    assert stats["failed"] == 0, stats["failures"]
    return dict(read_shard(out))


def test_the_model_thread_runs_only_the_model_and_the_pool_has_the_threads_asked_for(tmp_path):
    shard = image_shard(tmp_path)
    annotator = recorded("sketch", SketchParams(weights="random", simplify=False, resolution=64), tmp_path)
    samples = run(annotator, shard, tmp_path, threads=3)
    steps = {step: {thread for s, thread, _, _ in annotator.log if s == step} for step in ("prepare", "forward",
                                                                                          "finish")}
    assert steps["forward"] == {threading.get_ident()}  # the model ran in the calling thread, and only there
    pool = steps["prepare"] | steps["finish"]
    assert threading.get_ident() not in pool and 1 < len(pool) <= 3
    # the same bytes as the one-call interface (NMS, threshold and encoding moved, nothing else)
    for key, sample in samples.items():
        whole = annotator([decode_item(dict(read_shard(shard))[key]["jpg"], 10**7)])[0]["sketch.png"]
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(sample["sketch.png"]))), whole)


def test_reduced_decoding_gives_the_smallest_libjpeg_scale_not_below_the_declared_size():
    assert InputSize(224, "short").reduction(1536, 1024) == 4  # 256 px short side; 1/8 would give 128
    assert InputSize(513, "long").reduction(1536, 1024) == 2  # 768 px; 1/4 would give 384
    assert InputSize(513, "long").reduction(1024, 700) == 1  # 1/2 would give 512
    assert InputSize(513, "long").reduction(1025, 700) == 2  # libjpeg rounds up: ceil(1025 / 2) = 513, exactly
    assert decode_item(photo_jpeg(1025, 700), 10**7, InputSize(513, "long")).image.shape == (350, 513, 3)
    jpg = photo_jpeg(1536, 1024)
    for size in (InputSize(224, "short"), InputSize(513, "long"), InputSize(150, "long")):
        item = decode_item(jpg, 10**7, size)
        side = min(item.image.shape[:2]) if size.side == "short" else max(item.image.shape[:2])
        assert size.pixels <= side < 2 * size.pixels and item.stored_size == (1024, 1536)
    full = decode_item(jpg, 10**7)
    assert full.image.shape == (1024, 1536, 3) and full.size is None


@pytest.mark.parametrize("name, section", [
    ("seg", SegParams(weights="random", long_side=48, scales=[1.0], reduced_decode=True)),
    ("sketch", SketchParams(weights="random", simplify=False, resolution=48, reduced_decode=True)),
    pytest.param("clip", ClipParams(weights="random", model="ViT-S-32", reduced_decode=True),
                 marks=pytest.mark.slow),  # building CLIP takes ~15 s here; its short side is checked above
], ids=["seg", "sketch", "clip"])
def test_reduced_decoding_feeds_the_declared_size_and_outputs_stay_at_the_images_size(tmp_path, name, section):
    shard = image_shard(tmp_path)
    annotator = recorded(name, section, tmp_path)
    samples = run(annotator, shard, tmp_path)
    declared = annotator.input_size()
    seen = [(shape, stored) for step, _, shape, stored in annotator.log if step == "prepare"]
    assert sorted(stored for _, stored in seen) == sorted((h, w) for w, h in SIZES)  # on the pool: any order
    assert any(shape[:2] != stored for shape, stored in seen)  # some images were decoded smaller
    side = max if declared.side == "long" else min
    for shape, stored in seen:  # reduced: not below the declared size; else even 1/2 scale would be below it
        reduced = shape[:2] != stored
        assert side(shape[:2]) >= declared.pixels if reduced else -(-side(stored) // 2) < declared.pixels
    if name != "clip":
        maps = [np.asarray(Image.open(io.BytesIO(samples[key][f"{name}.png"]))) for key in sorted(samples)]
        assert [m.shape for m in maps] == [(h, w) for w, h in SIZES]


def test_reduced_decoding_is_part_of_the_shard_fingerprint_and_the_batch_size_is_not():
    section = SegParams(weights="random")
    assert (shard_fingerprint("seg", section, {}, "images")
            != shard_fingerprint("seg", section.model_copy(update={"reduced_decode": True}), {}, "images"))
    assert (shard_fingerprint("seg", section, {}, "images")
            == shard_fingerprint("seg", section.model_copy(update={"batch_size": section.batch_size + 1}), {},
                                 "images"))
