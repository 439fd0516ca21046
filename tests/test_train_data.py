"""The training-shard loader: contract samples in, aligned augmented tensors out, deterministic and resumable."""
import io
import itertools
import random

import numpy as np
import pytest
import torch
from PIL import Image
from train_shards import drawn_sample, write_training_shards

from shardio.layout import stats_path
from shardio.shards import shard_writer
from train.data import DataError, Preprocess, ShardLoader, make_example, shard_urls, to_device
from train.eval_data import EvalSet, EvaluationError


def _sample(rgb, labels, sketch, texts=None):
    def png(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "PNG")
        return buf.getvalue()

    def npy(a):
        buf = io.BytesIO()
        np.save(buf, a)
        return buf.getvalue()

    s = {"jpg": png(rgb), "seg.png": png(labels), "sketch.png": png(sketch),
         "clip.npy": npy(np.full(4, 0.5, np.float16))}
    if texts is not None:
        s["clip_text.npy"] = npy(texts)
    return s


def test_crop_and_flip_are_identical_for_image_seg_and_sketch():
    # one marker column: red in the image, class 7 in seg, a stroke in the sketch
    rgb = np.zeros((16, 24, 3), np.uint8)
    labels = np.zeros((16, 24), np.uint8)
    sketch = np.zeros((16, 24), np.uint8)
    rgb[:, 5, 0], labels[:, 5], sketch[:, 5] = 255, 7, 255
    flips = set()
    for seed in range(12):
        ex = make_example(_sample(rgb, labels, sketch), 16, 10, random.Random(seed), Preprocess(flip=True))
        red_col = (ex["image"][0] > 0).all(0).nonzero().flatten().tolist()
        seg_col = (ex["seg"] == 7).all(0).nonzero().flatten().tolist()
        sketch_col = (ex["sketch"][0] == 1).all(0).nonzero().flatten().tolist()
        assert red_col == seg_col == sketch_col and len(red_col) <= 1
        flips.add(tuple(red_col))
    assert len(flips) > 2  # crops and flips do vary


def _edge_markers():
    """A 16x32 image whose first column is red and last column blue."""
    rgb = np.zeros((16, 32, 3), np.uint8)
    rgb[:, 0, 0], rgb[:, -1, 2] = 255, 255
    return _sample(rgb, np.zeros((16, 32), np.uint8), np.zeros((16, 32), np.uint8))


def test_resize_keeps_the_whole_image_and_random_crop_takes_a_square_of_it():
    # supplement A: MS-COCO and MM-CelebA-HQ resized to the training resolution, Landscape randomly cropped
    for seed in range(6):
        ex = make_example(_edge_markers(), 16, 10, random.Random(seed), Preprocess(fit="resize"))
        assert ex["image"].shape == (3, 16, 16)
        assert ex["image"][0, :, 0].mean() > -0.5 and ex["image"][2, :, -1].mean() > -0.5  # both edges kept
    crops = [make_example(_edge_markers(), 16, 10, random.Random(seed), Preprocess(fit="random-crop"))
             for seed in range(6)]
    assert all(c["image"].shape == (3, 16, 16) for c in crops)
    # a 16x16 square of a 16x32 image cannot hold both edge columns
    assert not any(c["image"][0, :, 0].mean() > -0.5 and c["image"][2, :, -1].mean() > -0.5 for c in crops)


def test_resize_crop_is_the_spade_loaders_resize_to_286_of_256_bicubic_then_one_crop_and_flip_for_every_modality():
    # NVlabs/SPADE resize_and_crop: the whole image to load_size 286 for crop 256 (bicubic; labels nearest), one
    # random crop position and one flip (get_params) applied to image and label alike
    R, L = 32, 36  # 36 = round(32 * 286 / 256)
    labels = np.tile((np.arange(2 * L) // 2).astype(np.uint8), (2 * L, 1))  # class = column of the L-wide map
    rgb = np.zeros((2 * L, 2 * L, 3), np.uint8)
    rgb[:, L:, 0] = 255  # a step: bicubic overshoots next to it where bilinear does not
    sketch = np.zeros((2 * L, 2 * L), np.uint8)
    sketch[:, 20:28] = 255
    sample = _sample(rgb, labels, sketch)
    image_full = np.asarray(Image.fromarray(rgb).resize((L, L), Image.BICUBIC), np.float32) / 127.5 - 1
    sketch_full = np.asarray(Image.fromarray(sketch).resize((L, L), Image.BILINEAR), np.float32) / 255
    offsets, flips = set(), set()
    for seed in range(16):
        ex = make_example(sample, R, 40, random.Random(seed), Preprocess("resize-crop", flip=True))
        again = make_example(sample, R, 40, random.Random(seed), Preprocess("resize-crop", flip=True))
        assert all(torch.equal(ex[k], again[k]) for k in ex)  # the seed decides crop and flip
        row = ex["seg"][0].numpy().astype(int)
        flipped = row[0] > row[-1]
        x = int(row.min())
        assert sorted(row.tolist()) == list(range(x, x + R)) and all((ex["seg"] == ex["seg"][0]).flatten())
        crop = (slice(None), slice(x, x + R))
        expected_image, expected_sketch = image_full[crop][:, ::-1] if flipped else image_full[crop], \
            sketch_full[crop][:, ::-1] if flipped else sketch_full[crop]
        assert np.abs(ex["image"][0, 0].numpy() - expected_image[0, :, 0]).max() < 1e-5
        assert np.abs(ex["sketch"][0, 0].numpy() - expected_sketch[0]).max() < 1e-5
        offsets.add(x)
        flips.add(bool(flipped))
    assert len(offsets) > 2 and flips == {True, False}


def test_test_images_of_resize_crop_are_resized_to_the_resolution_and_never_flipped():
    assert Preprocess("resize-crop", flip=True).for_test() == Preprocess("resize", flip=False)
    assert Preprocess("random-crop", flip=True).for_test() == Preprocess("random-crop", flip=False)


def test_images_are_flipped_only_when_the_profile_asks():
    def red_on_the_left(seed, flip):
        ex = make_example(_edge_markers(), 16, 10, random.Random(seed), Preprocess(fit="resize", flip=flip))
        return ex["image"][0, :, 0].mean().item() > -0.5

    assert all(red_on_the_left(seed, flip=False) for seed in range(12))
    assert {red_on_the_left(seed, flip=True) for seed in range(12)} == {True, False}


def test_segmentation_travels_as_uint8_ids_and_becomes_one_hot_with_ignore_all_zero():
    labels = np.array([[0, 3], [255, 3]], np.uint8).repeat(4, 0).repeat(4, 1)
    ex = make_example(_sample(np.zeros((8, 8, 3), np.uint8), labels, np.zeros((8, 8), np.uint8)), 8, 5,
                      random.Random(0))
    assert ex["seg"].dtype == torch.uint8 and ex["seg"].shape == (8, 8)  # 1 byte a pixel, not 4 per class
    batch = to_device({k: v[None] for k, v in ex.items()}, "cpu", 5)
    onehot = batch["seg"][0]
    assert onehot.shape == (5, 8, 8) and onehot.dtype == torch.float32 and batch["style"] is batch["image"]
    assert set(onehot.sum(0).unique().tolist()) == {0.0, 1.0}
    assert (onehot.sum(0) == 0).sum() == 16  # the ignored quarter
    assert (onehot.argmax(0) == ex["seg"])[ex["seg"] != 255].all()
    with pytest.raises(DataError, match="class id >= 3"):
        make_example(_sample(np.zeros((8, 8, 3), np.uint8), labels, np.zeros((8, 8), np.uint8)), 8, 3,
                      random.Random(0))


def test_text_is_a_random_caption_embedding_else_the_image_embedding():
    rgb, labels, sketch, _ = drawn_sample(0, 16)
    texts = np.stack([np.full(4, 1.0), np.full(4, 2.0)]).astype(np.float16)
    picked = {make_example(_sample(rgb, labels, sketch, texts), 16, 182, random.Random(s))["text"][0].item()
              for s in range(20)}
    assert picked == {1.0, 2.0}
    assert make_example(_sample(rgb, labels, sketch), 16, 182, random.Random(0))["text"].tolist() == [0.5] * 4


def test_loader_is_deterministic_and_resumes_at_its_position(tmp_path):
    urls = [str(p) for p in write_training_shards(tmp_path, images=6, per_shard=3, short_side=20)]
    assert shard_urls(tmp_path) == urls

    def loader():
        return ShardLoader(urls, 16, 182, 2, seed=3, shuffle_buffer=4, epoch_batches=3)

    full = [b["image"] for b in itertools.islice(loader(), 7)]
    first = loader()
    it = iter(first)
    for _ in range(4):
        next(it)
    resumed = loader()
    resumed.load_state_dict(first.state_dict())
    assert first.state_dict() == {"epoch": 1, "batch": 1}
    rest = [b["image"] for b in itertools.islice(resumed, 3)]
    assert all(torch.equal(a, b) for a, b in zip(full[4:], rest))
    assert not torch.equal(full[0], full[3])  # a new epoch is a new stream


def test_a_resume_saved_after_an_epochs_last_batch_starts_the_next_epoch_without_replaying_it(tmp_path):
    urls = [str(p) for p in write_training_shards(tmp_path, images=6, per_shard=3, short_side=20)]

    class Counting(ShardLoader):
        built = []

        def _epoch(self, epoch):
            self.built.append(epoch)
            return super()._epoch(epoch)

    def loader():
        return Counting(urls, 16, 182, 2, seed=3, shuffle_buffer=4, epoch_batches=3)

    first = loader()
    full = [b["image"] for b in itertools.islice(first, 5)]
    saved = {"epoch": 0, "batch": 3}  # the position after step 3, as the training state records it
    resumed = loader()
    resumed.load_state_dict(saved)
    Counting.built.clear()
    rest = [b["image"] for b in itertools.islice(resumed, 2)]
    assert all(torch.equal(a, b) for a, b in zip(full[3:], rest)) and len(rest) == 2
    assert Counting.built == [1]  # epoch 0 was not decoded again


def test_an_undecodable_sample_stops_the_loader_naming_it_unless_skipping_is_asked(tmp_path, caplog):
    good = write_training_shards(tmp_path / "good", images=2, per_shard=2, short_side=20)
    path = tmp_path / "sample" / "shards" / "train-000000.tar"
    with shard_writer(path) as w:
        w.write({"__key__": "broken", "jpg": b"not a jpeg", "seg.png": b"x", "sketch.png": b"x",
                 "clip.npy": b"x"})

    def loader(**skip):
        return ShardLoader([str(path)] + [str(p) for p in good], 16, 182, 2, seed=0, shuffle_buffer=1,
                           epoch_batches=2, **skip)

    with pytest.raises(DataError, match=rf"{path}: sample broken is unusable .*`pipeline pack --dataset sample`"):
        list(itertools.islice(loader(), 2))
    batches = list(itertools.islice(loader(skip_bad=True), 2))
    assert all(b["image"].shape == (2, 3, 16, 16) for b in batches)
    assert "skipped the sample (1 skipped by this reader so far)" in caplog.text and "broken" in caplog.text


def test_a_shard_that_reads_badly_mid_training_is_an_error_unless_skipping_is_asked(tmp_path, caplog):
    paths = write_training_shards(tmp_path / "shards", images=4, per_shard=4, short_side=20)
    with open(paths[0], "r+b") as f:  # cut inside its third sample: the loader gets this far before it fails
        f.truncate(f.seek(0, 2) // 2)

    def loader(**skip):
        return ShardLoader([str(paths[0])], 16, 182, 2, seed=0, shuffle_buffer=1, epoch_batches=4, **skip)

    with pytest.raises(DataError, match=rf"{paths[0]}: unreadable past some point \(ReadError.*pipeline pack"):
        list(itertools.islice(loader(), 4))
    assert len(list(itertools.islice(loader(skip_bad=True), 4))) == 4
    assert "skipped the rest of the shard" in caplog.text


def test_a_shard_not_the_size_its_marker_recorded_is_refused_naming_the_repair(tmp_path):
    shards = tmp_path / "sample" / "shards"
    paths = write_training_shards(shards, images=6, per_shard=3, short_side=20, split="test")
    assert shard_urls(shards, "test") == [str(p) for p in paths]
    size = paths[1].stat().st_size
    with open(paths[1], "r+b") as f:
        f.truncate(size // 2)
    expected = rf"{paths[1]}: is {size // 2} bytes but its marker .* recorded {size}.*`pipeline pack --dataset sample`"
    with pytest.raises(DataError, match=expected):
        shard_urls(shards, "test")
    with pytest.raises(EvaluationError, match=expected):  # evaluation reads the test split through the same check
        EvalSet(shards, 16, 182, limit=4, seed=0, batch_size=2)
    stats_path(paths[1]).unlink()
    with pytest.raises(DataError, match=rf"{paths[1]}: unfinished \(no test-000001.stats.json marker\); run "
                                        "`pipeline pack --dataset sample`"):
        shard_urls(shards, "test")


def test_missing_shards_are_an_error_naming_the_directory(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)):
        shard_urls(tmp_path)
