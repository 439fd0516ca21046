"""Post-processing of soft edge maps into thin binary strokes: non-maximum suppression and thresholding."""
import cv2
import numpy as np

# Neighbour offsets (dy, dx) across an edge whose gradient points at 0, 45, 90, 135 degrees.
_ACROSS = (((0, 1), (0, -1)), ((1, 1), (-1, -1)), ((1, 0), (-1, 0)), ((1, -1), (-1, 1)))


def non_max_suppression(edges: np.ndarray) -> np.ndarray:
    """The edge map with every pixel that is not a maximum across the edge (along the gradient of the smoothed
    map, quantised to 4 directions) set to 0; thick HED responses become one-pixel ridges."""
    smooth = cv2.GaussianBlur(edges.astype(np.float32), (5, 5), 1.0)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    angle = np.mod(np.degrees(np.arctan2(gy, gx)), 180.0)
    direction = np.round(angle / 45.0).astype(np.int64) % 4
    padded = np.pad(edges, 1, mode="constant")
    h, w = edges.shape
    keep = np.zeros(edges.shape, bool)
    for d, ((ay, ax), (by, bx)) in enumerate(_ACROSS):
        a = padded[1 + ay:1 + ay + h, 1 + ax:1 + ax + w]
        b = padded[1 + by:1 + by + h, 1 + bx:1 + bx + w]
        keep |= (direction == d) & (edges >= a) & (edges >= b)
    return np.where(keep, edges, 0).astype(edges.dtype)


def strokes(edges: np.ndarray, threshold: float, nms: bool) -> np.ndarray:
    """Binary stroke map (bool) of a soft edge map in [0, 1]."""
    if nms:
        edges = non_max_suppression(edges)
    return edges > threshold
