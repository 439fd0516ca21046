"""Inputs for the metric tests and benchmark: smooth test images, noise, and an Inception weights file in
torch-fidelity's layout (no real weights can be downloaded here)."""
from pathlib import Path

import numpy as np
import torch

from train.evaluate import random_inception_state


def smooth_images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """n different smooth colour images, uint8 [n, size, size, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    images = [np.stack([a * xx + (1 - a) * yy, np.sin(6 * b * xx) ** 2, c * yy], -1) for a, b, c in rng.random((n, 3))]
    return (np.stack(images) * 255).astype(np.uint8)


def add_noise(images: np.ndarray, std: float, seed: int = 1) -> np.ndarray:
    """`images` plus Gaussian noise of `std` uint8 levels, clipped."""
    noisy = images + np.random.default_rng(seed).normal(0, std, images.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def write_random_inception(path: Path) -> Path:
    """Save torch-fidelity's InceptionV3 with random weights (seed 0) and batch-norm statistics measured on two
    smooth images."""
    torch.manual_seed(0)
    calibration = torch.from_numpy(smooth_images(2, seed=9)).permute(0, 3, 1, 2).contiguous()
    torch.save(random_inception_state(calibration), path)
    return path
