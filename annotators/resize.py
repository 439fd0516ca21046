"""Resizing shared by the annotators: long-side scaling and a memory-bounded bilinear upsample + argmax."""
import cv2
import numpy as np
import torch


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """The image scaled (bilinear, as cv2's default) so its longer side is `long_side`; 0 keeps it."""
    h, w = image.shape[:2]
    if long_side <= 0 or max(h, w) == long_side:
        return image
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def bilinear_matrix(n_out: int, n_in: int, device=None) -> torch.Tensor:
    """[n_out, n_in] weights of 1-D bilinear resampling with half-pixel centres (align_corners=False)."""
    pos = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    lo = pos.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = pos - lo
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    m[torch.arange(n_out), lo] += 1 - frac
    m[torch.arange(n_out), hi] += frac
    return m.float().to(device)


def upsampled_argmax(logits: torch.Tensor, size: tuple[int, int], band: int = 128) -> np.ndarray:
    """argmax over classes of `logits` [C, h, w] bilinearly upsampled to `size` (H, W), computed in bands of rows
    so a large image never holds all C full-size maps at once."""
    logits = logits.float()
    my = bilinear_matrix(size[0], logits.shape[1], logits.device)
    mx = bilinear_matrix(size[1], logits.shape[2], logits.device)
    cols = torch.einsum("chw,Ww->chW", logits, mx)  # [C, h, W]
    out = np.empty(size, np.uint8)
    for r in range(0, size[0], band):
        rows = torch.einsum("Hh,chW->cHW", my[r:r + band], cols)
        out[r:r + band] = rows.argmax(0).to(torch.uint8).cpu().numpy()
    return out
