"""Diversity with INADE's protocol (supplement §3): generate G groups of images for the same conditions with new
noise, score random pairs of groups by their mean LPIPS, and report the mean over the pairs (10 of 10 groups in
the paper). LPIPS is the `lpips` package's v0.1 AlexNet variant: its linear layers ship inside the wheel, the
AlexNet backbone (torchvision's ImageNet weights) comes through the weight registry."""
import importlib.resources
import itertools
import warnings
from pathlib import Path

import numpy as np

from .base import EvalContext, EvalInputs, MetricError, check_images


def load_lpips(backbone: str, weights_dir: Path, device: str = "cpu"):
    """LPIPS (AlexNet, v0.1) with the backbone weights `backbone` (registry name or file in torchvision's AlexNet
    layout) and the package's own linear layers, all loaded strictly."""
    import lpips
    import torch
    import torchvision

    from annotators.weights import WeightsError, resolve

    path = resolve(backbone, weights_dir)
    alexnet = torchvision.models.alexnet(weights=None)
    try:
        alexnet.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise WeightsError(f"LPIPS backbone weights {path} are not torchvision's AlexNet state dict: {err}") from None
    with warnings.catch_warnings():  # lpips 0.1.4 builds its AlexNet with torchvision's deprecated `pretrained=`
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        model = lpips.LPIPS(pretrained=False, net="alex", version="0.1", pnet_rand=True, verbose=False)
    features = alexnet.features.state_dict()
    # lpips splits AlexNet's `features` into slice1..5 keeping each layer's index: slice2.3.weight = features.3.weight
    model.net.load_state_dict({key: features[key.split(".", 1)[1]] for key in model.net.state_dict()}, strict=True)
    linear = torch.load(importlib.resources.files("lpips") / "weights/v0.1/alex.pth", map_location="cpu",
                        weights_only=True)
    for index, layer in enumerate(model.lins):
        prefix = f"lin{index}."
        layer.load_state_dict({k[len(prefix):]: v for k, v in linear.items() if k.startswith(prefix)}, strict=True)
    return model.eval().requires_grad_(False).to(device)


def lpips_distances(a: np.ndarray, b: np.ndarray, model, batch_size: int = 32, device: str = "cpu") -> np.ndarray:
    """Per-image LPIPS distance (float [N]) between two aligned uint8 image sets [N, H, W, 3]."""
    import torch

    a, b = check_images("lpips input a", a), check_images("lpips input b", b)
    if a.shape != b.shape:
        raise MetricError(f"lpips: image sets of shapes {a.shape} and {b.shape} are not aligned")

    def tensor(x):  # uint8 NHWC -> float NCHW in [-1, 1], the range LPIPS expects
        return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)

    out = []
    with torch.no_grad():
        for start in range(0, len(a), batch_size):
            end = start + batch_size
            out.append(model(tensor(a[start:end]), tensor(b[start:end])).flatten().double().cpu().numpy())
    return np.concatenate(out)


def group_pairs(groups: int, pairs: int, seed: int) -> list[tuple[int, int]]:
    """`pairs` distinct random pairs of group indices (all pairs when there are fewer), reproducible by seed."""
    every = list(itertools.combinations(range(groups), 2))
    if pairs >= len(every):
        return every
    chosen = np.random.default_rng(seed).choice(len(every), size=pairs, replace=False)
    return [every[i] for i in sorted(chosen)]


def _distances(groups: np.ndarray, model, pairs: int, seed: int, batch_size: int, device: str) -> np.ndarray:
    """float [P, N]: per chosen pair of groups, the LPIPS distance of each condition's two images."""
    groups = np.asarray(groups)
    if groups.ndim != 5 or len(groups) < 2:
        raise MetricError(f"lpips diversity needs at least 2 groups [G, N, H, W, 3], got shape {groups.shape}")
    return np.stack([lpips_distances(groups[i], groups[j], model, batch_size, device)
                     for i, j in group_pairs(len(groups), pairs, seed)])


def _mean_over_pairs(distances: np.ndarray) -> float:
    return float(np.mean([row.mean() for row in distances]))


def diversity(groups: np.ndarray, model, pairs: int, seed: int, batch_size: int = 32, device: str = "cpu") -> float:
    """INADE's diversity score of groups uint8 [G, N, H, W, 3]: mean over random group pairs of the mean LPIPS
    between the two groups' images of the same condition."""
    return _mean_over_pairs(_distances(groups, model, pairs, seed, batch_size, device))


def lpips_network(ctx: EvalContext):
    """The run's LPIPS network (backbone `evaluate.lpips_weights`), loaded once and shared by every LPIPS metric."""
    return ctx.model("lpips", lambda: load_lpips(ctx.params.lpips_weights, ctx.weights_dir, ctx.device))


def pair_distances(inputs: EvalInputs, ctx: EvalContext) -> np.ndarray:
    """The LPIPS distances [P, N] of `evaluate.diversity_pairs` random pairs of the input groups (the same pairs
    in every batch)."""
    if inputs.groups is None:
        raise MetricError("lpips_diversity needs groups of samples generated from the same conditions")
    p = ctx.params
    return _distances(inputs.groups, lpips_network(ctx), p.diversity_pairs, p.seed, p.batch_size, ctx.device)


def lpips_diversity(parts: list[np.ndarray], ctx: EvalContext, reference=None) -> dict[str, float]:
    """LPIPS diversity: the mean over the pairs of groups of their mean distance over every condition."""
    return {"lpips_diversity": _mean_over_pairs(np.concatenate(parts, axis=1))}
