"""Sample grids with fixed conditions: each single modality, every pair, all, and none (unconditional)."""
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shardio.modalities import MODEL_MODALITIES

from .noise import private_noise

PATTERNS: list[tuple[str, ...]] = (
    [()] + [(m,) for m in MODEL_MODALITIES] + list(combinations(MODEL_MODALITIES, 2)) + [MODEL_MODALITIES])


def pattern_masks(pattern: tuple[str, ...], batch: int, device="cpu") -> dict:
    """Modality masks on `device` with exactly the modalities of `pattern` present for every sample."""
    return {m: torch.full((batch,), m in pattern, dtype=torch.bool, device=device) for m in MODEL_MODALITIES}


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def generated_rows(G, cond: dict, seed: int = 0) -> list[torch.Tensor]:
    """G's images of the fixed conditions under each modality pattern, on their device; every pattern draws the
    same noise from `seed` (a private generator: the training streams are left as they were)."""
    n, device = cond["image"].shape[0], cond["image"].device
    rows = []
    for pattern in PATTERNS:
        with private_noise(seed):
            image, _ = G(cond, pattern_masks(pattern, n, device))
        rows.append(image.float())
    return rows


def render_grid(G, cond: dict, seg_colours: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rows: the conditions (real image = style, seg, sketch), then one row per modality pattern; columns: the
    fixed condition samples. Noise is drawn from `seed`, so grids of different steps are comparable."""
    seg_ids = cond["seg"].argmax(1).cpu().numpy()
    seg_ids[cond["seg"].sum(1).cpu().numpy() == 0] = len(seg_colours)
    palette = np.concatenate([seg_colours, np.zeros((1, 3), np.uint8)])
    rows = [_to_uint8(cond["image"]), palette[seg_ids], np.repeat(_to_uint8(cond["sketch"] * 2 - 1), 3, -1)]
    rows += [_to_uint8(image) for image in generated_rows(G, cond, seed)]
    return np.concatenate([np.concatenate(list(r), 1) for r in rows], 0)


def image_grid(images: torch.Tensor, columns: int) -> np.ndarray:
    """Images [N,3,H,W] in [-1, 1] tiled row by row, `columns` to a row, as one uint8 [rows*H, columns*W, 3]."""
    tiles = _to_uint8(images.float())
    rows = [np.concatenate(list(tiles[i:i + columns]), 1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, 0)


def save_grid(path: Path, grid: np.ndarray) -> None:
    """Write the grid as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
