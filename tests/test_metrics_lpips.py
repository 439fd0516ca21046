"""LPIPS diversity: distances of identical and different images, INADE's group-pair protocol, and strict loading
of the AlexNet backbone (a file in torchvision's layout, written here with random weights) and of the `lpips`
wheel's own linear layers."""
import importlib.resources

import lpips
import numpy as np
import pytest
import torch
import torchvision

from annotators.weights import WeightsError
from pipeline.params.stages import EvaluateParams
from train.metrics import MetricStream, evaluate
from train.metrics.base import EvalContext, EvalInputs
from train.metrics.lpips_diversity import diversity, group_pairs, load_lpips, lpips_distances


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "alexnet-random.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def model(alexnet_file):
    return load_lpips(str(alexnet_file), alexnet_file.parent)


def images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def test_lpips_is_zero_for_identical_and_positive_for_different_images(model):
    a, b = images(3, 0), images(3, 1)
    assert lpips_distances(a, a, model).tolist() == [0.0, 0.0, 0.0]
    assert (lpips_distances(a, b, model) > 0).all()
    assert lpips_distances(a, b, model, batch_size=2) == pytest.approx(lpips_distances(a, b, model, batch_size=3))


def test_lpips_distances_are_the_lpips_package_on_the_same_images(alexnet_file, model, monkeypatch):
    backbone = torchvision.models.alexnet(weights=None)
    backbone.load_state_dict(torch.load(alexnet_file, weights_only=True))
    # the package builds its AlexNet from torchvision's; it gets ours, and its own v0.1 linear layers
    monkeypatch.setattr(lpips.pretrained_networks.tv, "alexnet", lambda **kwargs: backbone)
    reference = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()
    a, b = images(3, 0), images(3, 1)

    def unit(x):  # uint8 NHWC -> float NCHW in [0, 1], which normalize=True maps to [-1, 1]
        return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255

    with torch.no_grad():
        expected = reference(unit(a), unit(b), normalize=True).flatten().numpy()
    assert lpips_distances(a, b, model) == pytest.approx(expected, rel=1e-4)


def test_lpips_loads_backbone_and_linear_layers_strictly(alexnet_file, model, tmp_path):
    backbone = torch.load(alexnet_file, weights_only=True)
    assert torch.equal(model.net.state_dict()["slice5.10.weight"], backbone["features.10.weight"])
    linear = torch.load(importlib.resources.files("lpips") / "weights/v0.1/alex.pth", map_location="cpu",
                        weights_only=True)
    assert all(torch.equal(model.lins[i].model[1].weight, linear[f"lin{i}.model.1.weight"]) for i in range(5))

    torch.save(torchvision.models.vgg11(weights=None).state_dict(), tmp_path / "vgg.pth")
    with pytest.raises(WeightsError, match="not torchvision's AlexNet state dict"):
        load_lpips(str(tmp_path / "vgg.pth"), tmp_path)
    with pytest.raises(WeightsError, match="alexnet-imagenet.*not found at .*alexnet-owt-7be5be79.pth"):
        load_lpips("alexnet-imagenet", tmp_path / "empty-weights-dir")


def test_group_pairs_follow_inades_protocol():
    pairs = group_pairs(10, 10, seed=0)
    assert len(set(pairs)) == 10 and all(0 <= i < j < 10 for i, j in pairs)
    assert pairs == group_pairs(10, 10, seed=0) and pairs != group_pairs(10, 10, seed=1)
    assert group_pairs(3, 10, seed=0) == [(0, 1), (0, 2), (1, 2)]


def test_diversity_is_zero_without_variation_and_positive_with_it(alexnet_file, model):
    same = np.stack([images(2, 0)] * 4)
    assert diversity(same, model, pairs=3, seed=0) == 0.0
    varied = np.stack([images(2, seed) for seed in range(4)])
    # with every pair scored, the protocol's mean is the mean over all group pairs
    expected = np.mean([lpips_distances(varied[i], varied[j], model).mean() for i, j in group_pairs(4, 6, 0)])
    assert diversity(varied, model, pairs=6, seed=0) == pytest.approx(expected) and expected > 0

    ctx = EvalContext(EvaluateParams(lpips_weights=str(alexnet_file), diversity_pairs=6), alexnet_file.parent,
                      alexnet_file.parent)
    assert evaluate(["lpips_diversity"], EvalInputs(varied[0], groups=varied), ctx) == {
        "lpips_diversity": pytest.approx(expected)}
    # the groups streamed one condition at a time give the same number (but for AlexNet's float32 rounding, which
    # differs between batch sizes; evaluation's batches are the same however many processes share them)
    stream = MetricStream(["lpips_diversity"], ctx)
    for index in (1, 0):
        stream.add(index, EvalInputs(varied[0, index:index + 1], groups=varied[:, index:index + 1]))
    assert stream.result() == {"lpips_diversity": pytest.approx(diversity(varied, model, pairs=6, seed=0), rel=1e-6)}
