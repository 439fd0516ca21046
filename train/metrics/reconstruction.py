"""Closeness of each generated image to the test image its conditions came from (Unite-and-Conquer's Tables 1-2,
arXiv:2212.00793: "SSIM of the produced result with the actual image", LPIPS, lower better): SSIM and LPIPS to
the ground truth, per image, averaged over the set. Only a row that gives the generator some condition is scored
(unconditional samples have no ground truth)."""
import numpy as np

from .base import EvalContext, EvalInputs, MetricError, check_images
from .lpips_diversity import lpips_distances, lpips_network

SSIM_SIGMA = 1.5  # Wang et al. 2004's 11 x 11 circular-symmetric Gaussian window (skimage truncates at 3.5 sigma)


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image SSIM (float [N]) of two aligned uint8 image sets [N, H, W, 3]: Wang et al.'s index with an 11 x 11
    Gaussian window of sigma 1.5, K1 0.01, K2 0.03, population covariances, on each RGB channel, averaged over the
    channels and the image (scikit-image's `structural_similarity` in its "match Wang et al." setting)."""
    from skimage.metrics import structural_similarity

    a, b = check_images("ssim input a", a), check_images("ssim input b", b)
    if a.shape != b.shape:
        raise MetricError(f"ssim: image sets of shapes {a.shape} and {b.shape} are not aligned")
    if min(a.shape[1:3]) < 11:
        raise MetricError(f"ssim: images of {a.shape[1]} x {a.shape[2]} px are smaller than its 11 x 11 window")
    return np.array([structural_similarity(x, y, gaussian_weights=True, sigma=SSIM_SIGMA,
                                           use_sample_covariance=False, data_range=255, channel_axis=-1)
                     for x, y in zip(a, b)])


def _pairs(inputs: EvalInputs, metric: str) -> tuple[np.ndarray, np.ndarray]:
    images = check_images("generated", inputs.generated)
    if inputs.real is None or len(inputs.real) != len(images):
        raise MetricError(f"{metric} needs the test image of every generated image ({len(images)})")
    return images, inputs.real


def ssim_scores(inputs: EvalInputs, ctx: EvalContext) -> np.ndarray:
    """The SSIM of each generated image to its test image (float [N])."""
    return ssim(*_pairs(inputs, "ssim"))


def lpips_gt_scores(inputs: EvalInputs, ctx: EvalContext) -> np.ndarray:
    """The LPIPS distance of each generated image to its test image (float [N]), by the network LPIPS diversity
    uses."""
    return lpips_distances(*_pairs(inputs, "lpips_gt"), lpips_network(ctx), ctx.params.batch_size, ctx.device)


def mean_ssim(parts: list[np.ndarray], ctx: EvalContext, reference=None) -> dict[str, float]:
    """Mean SSIM to the ground truth (1 = identical)."""
    return {"ssim": float(np.concatenate(parts).mean())}


def mean_lpips_gt(parts: list[np.ndarray], ctx: EvalContext, reference=None) -> dict[str, float]:
    """Mean LPIPS to the ground truth (0 = identical)."""
    return {"lpips_gt": float(np.concatenate(parts).mean())}
