"""The built-in sample: deterministic, labels exactly on the drawn regions, captions, varied sizes, photos."""
import filecmp
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import landscapes as ls
from pipeline.params.stages import SampleParams
from pipeline.sample import write_sample

SMALL = SampleParams(landscapes=6, seed=3)


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_runs_are_byte_identical(tmp_path):
    write_sample(tmp_path / "a", SMALL, progress=False)
    write_sample(tmp_path / "b", SMALL, progress=False)
    a, b = read_tree(tmp_path / "a"), read_tree(tmp_path / "b")
    assert len(a) == 6 * 3 + len(__import__("pipeline.sample").sample.PHOTOS)
    assert a == b


def test_another_seed_draws_other_pictures(tmp_path):
    write_sample(tmp_path / "a", SMALL, progress=False)
    write_sample(tmp_path / "b", SampleParams(landscapes=6, seed=4, include_photos=False), progress=False)
    assert not filecmp.cmp(tmp_path / "a/seg/landscape-000.png", tmp_path / "b/seg/landscape-000.png", shallow=False)


def test_rewrite_replaces_the_previous_sample(tmp_path):
    write_sample(tmp_path / "s", SampleParams(landscapes=4, include_photos=False), progress=False)
    write_sample(tmp_path / "s", SampleParams(landscapes=2, include_photos=False), progress=False)
    assert sorted(p.name for p in (tmp_path / "s/images").iterdir()) == ["landscape-000.jpg", "landscape-001.jpg"]


@pytest.mark.parametrize("index", range(8))
def test_labels_are_the_drawn_regions(index):
    """Classify every pixel by the nearest per-class mean colour: it must agree with the labels."""
    drawn = ls.draw_landscape(0, index, (320, 240))
    image, labels = drawn.image.astype(np.float32), drawn.labels
    classes = np.unique(labels)
    assert set(classes) <= set(ls.PALETTE)
    means = np.stack([image[labels == c].mean(0) for c in classes])
    nearest = classes[np.argmin(((image[:, :, None, :] - means) ** 2).sum(-1), axis=-1)]
    assert (nearest == labels).mean() > 0.95
    # and a label map shifted by a few pixels no longer matches as well
    assert (nearest == np.roll(labels, 12, axis=0)).mean() < (nearest == labels).mean() - 0.01


@pytest.mark.parametrize("index", range(8))
def test_caption_names_what_is_drawn(index):
    drawn = ls.draw_landscape(0, index, (320, 240))
    present = set(np.unique(drawn.labels))
    words = {ls.TREE: "trees", ls.MOUNTAIN: "mountains", ls.SEA: "sea", ls.RIVER: "river", ls.ROCK: "rocks",
             ls.SNOW: "snowy", ls.CLOUDS: "cloudy", ls.HILL: "hills", ls.SAND: "sandy"}
    for class_id, word in words.items():
        assert (word in drawn.caption) == (class_id in present), (word, drawn.caption)


def test_sample_files_sizes_and_photos(tmp_path):
    out = tmp_path / "sample"
    write_sample(out, SampleParams(landscapes=8, seed=0), progress=False)
    sizes = set()
    for image_path in sorted((out / "images").glob("landscape-*")):
        with Image.open(image_path) as im:
            size = im.size
        with Image.open(out / "seg" / f"{image_path.stem}.png") as seg:
            assert seg.mode == "L" and seg.size == size
        assert (out / "captions" / f"{image_path.stem}.txt").read_text().strip().startswith("a landscape with")
        sizes.add(size)
    assert len(sizes) == 8
    assert any(max(s) > 1024 for s in sizes) and any(w < h for w, h in sizes) and any(w > h for w, h in sizes)
    photos = sorted((out / "images").glob("photo-*"))
    assert len(photos) == 8
    for photo in photos:
        with Image.open(photo) as im:
            im.load()
            assert min(im.size) >= 256
