"""Sample grids with fixed conditions: each single modality, every pair, all, and none (unconditional)."""
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .configs import MODALITIES

PATTERNS: list[tuple[str, ...]] = (
    [()] + [(m,) for m in MODALITIES] + list(combinations(MODALITIES, 2)) + [MODALITIES])


def pattern_masks(pattern: tuple[str, ...], batch: int) -> dict:
    """Modality masks with exactly the modalities of `pattern` present for every sample."""
    return {m: torch.full((batch,), m in pattern, dtype=torch.bool) for m in MODALITIES}


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def render_grid(G, cond: dict, seg_colours: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rows: the conditions (real image = style, seg, sketch), then one row per modality pattern; columns: the
    fixed condition samples. Noise is drawn from `seed`, so grids of different steps are comparable."""
    n = cond["image"].shape[0]
    seg_ids = cond["seg"].argmax(1).cpu().numpy()
    seg_ids[cond["seg"].sum(1).cpu().numpy() == 0] = len(seg_colours)
    palette = np.concatenate([seg_colours, np.zeros((1, 3), np.uint8)])
    rows = [_to_uint8(cond["image"]), palette[seg_ids], np.repeat(_to_uint8(cond["sketch"] * 2 - 1), 3, -1)]
    with torch.random.fork_rng(devices=[]):
        for pattern in PATTERNS:
            torch.manual_seed(seed)
            image, _ = G(cond, pattern_masks(pattern, n))
            rows.append(_to_uint8(image.float()))
    return np.concatenate([np.concatenate(list(r), 1) for r in rows], 0)


def save_grid(path: Path, grid: np.ndarray) -> None:
    """Write the grid as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
