"""SSIM and LPIPS to the ground truth (Unite-and-Conquer's Tables 1-2): SSIM's value on images whose index has a
closed form, its window, LPIPS through the same network as LPIPS diversity, and which rows they score."""
import numpy as np
import pytest
import torch
import torchvision

from pipeline.params.stages import EvaluateParams
from train.metrics import evaluate
from train.metrics.base import EvalContext, MetricError
from train.metrics.conditions import evaluate_conditions, inputs_for
from train.metrics.lpips_diversity import lpips_distances, lpips_network
from train.metrics.reconstruction import ssim


def constant(value: int, n: int = 1, size: int = 32) -> np.ndarray:
    return np.full((n, size, size, 3), value, np.uint8)


def test_ssim_of_constant_images_is_its_luminance_term():
    # no variance: SSIM = (2 a b + C1) / (a² + b² + C1), C1 = (0.01 · 255)², whatever the window
    c1 = (0.01 * 255) ** 2
    assert ssim(constant(100), constant(110))[0] == pytest.approx((2 * 100 * 110 + c1) / (100 ** 2 + 110 ** 2 + c1))
    assert ssim(constant(100), constant(100)).tolist() == [1.0]


def test_ssim_window_is_an_11_pixel_gaussian():
    # one pixel changed: only the windows that reach it drop below 1. With the 11 x 11 window (radius 5) on a
    # 32 px image, a change at the centre leaves every pixel more than 5 px away at SSIM 1.
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 16, 16] = 255 - b[0, 16, 16]
    from skimage.metrics import structural_similarity

    _, full = structural_similarity(a[0], b[0], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255, channel_axis=-1, full=True)
    changed = np.argwhere((full < 1 - 1e-12).any(-1))
    assert changed.min(0).tolist() == [11, 11] and changed.max(0).tolist() == [21, 21]
    assert ssim(a, b)[0] == pytest.approx(full[5:-5, 5:-5].mean())  # the mean over the windows inside the image


def test_ssim_refuses_unaligned_or_too_small_images():
    with pytest.raises(MetricError, match="not aligned"):
        ssim(constant(1, 2), constant(1, 3))
    with pytest.raises(MetricError, match="smaller than its 11 x 11 window"):
        ssim(constant(1, size=10), constant(1, size=10))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), folder / "alexnet.pth")
    return EvalContext(EvaluateParams(lpips_weights=str(folder / "alexnet.pth"), batch_size=2), folder, folder)


def test_lpips_to_the_ground_truth_is_the_diversity_networks_distance(ctx):
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    seg = np.zeros((3, 32, 32), np.uint8)
    same = evaluate(["lpips_gt", "ssim"], inputs_for("seg", real, real=real, seg=seg), ctx)
    assert same == {"lpips_gt": 0.0, "ssim": 1.0}
    scores = evaluate(["lpips_gt"], inputs_for("seg", generated, real=real, seg=seg), ctx)
    assert scores["lpips_gt"] == pytest.approx(lpips_distances(generated, real, lpips_network(ctx)).mean())
    assert scores["lpips_gt"] > 0 and list(ctx.models) == ["lpips"]  # one network, shared with diversity


def test_only_rows_given_a_condition_are_scored_against_the_ground_truth(ctx):
    images = constant(90, 2)
    given = {"seg": np.zeros((2, 32, 32), np.uint8), "sketch": np.zeros((2, 32, 32), np.uint8),
             "text": np.ones((2, 4))}
    table = evaluate_conditions(["ssim"], {c: inputs_for(c, images, real=constant(100, 2), **given)
                                           for c in ("unconditional", "text", "seg", "sketch", "all")}, ctx)
    assert table["unconditional"] == {}  # an unconditional sample comes from no test image
    assert {c: set(s) for c, s in table.items() if c != "unconditional"} == {c: {"ssim"} for c in
                                                                              ("text", "seg", "sketch", "all")}
    with pytest.raises(MetricError, match="ssim needs the test image"):
        evaluate(["ssim"], inputs_for("seg", images, real=constant(100, 1), seg=given["seg"]), ctx)
