"""Procedurally drawn landscapes with their exact COCO-Stuff segmentation and a caption.

Every region is painted into the picture and its class id into the label map through the same mask, so
the labels are exact by construction. Drawing is a pure function of (seed, index, size).
"""
from dataclasses import dataclass

import numpy as np

from annotators.labelmaps import load_label_map

COCO = load_label_map("coco-stuff-182")
SKY, CLOUDS, MOUNTAIN, SNOW, HILL = (COCO.id(n) for n in ("sky-other", "clouds", "mountain", "snow", "hill"))
SEA, RIVER, GRASS, SAND, ROCK, TREE = (COCO.id(n) for n in ("sea", "river", "grass", "sand", "rock", "tree"))

# Base colours (RGB) of each class; each picture jitters them a little.
PALETTE = {
    SKY: (110, 160, 225), CLOUDS: (238, 238, 242), MOUNTAIN: (112, 104, 118), SNOW: (250, 250, 252),
    HILL: (140, 120, 70), SEA: (30, 80, 140), RIVER: (60, 120, 170), GRASS: (80, 150, 50),
    SAND: (215, 195, 140), ROCK: (140, 130, 120), TREE: (25, 85, 35),
}

# Sizes (width, height) cycled through: landscape, portrait and square, several over 1024 px.
SIZES = [(640, 480), (800, 600), (1280, 720), (1536, 1024), (480, 720), (1024, 1024), (1600, 900), (720, 540)]


@dataclass
class Landscape:
    """One drawn picture: RGB uint8 [H, W, 3], class ids uint8 [H, W] and a one-line caption."""

    image: np.ndarray
    labels: np.ndarray
    caption: str


class _Canvas:
    def __init__(self, rng: np.random.Generator, width: int, height: int):
        self.rng, self.w, self.h = rng, width, height
        self.yy, self.xx = np.mgrid[0:height, 0:width].astype(np.float32)
        self.image = np.zeros((height, width, 3), np.float32)
        self.labels = np.zeros((height, width), np.uint8)
        self.grain = rng.normal(0.0, 1.0, (height, width, 1)).astype(np.float32)

    def paint(self, mask: np.ndarray, class_id: int, shade: np.ndarray | float = 0.0, texture: float = 6.0):
        """Paint `mask` with the class's jittered colour (+ shading and grain) and label it."""
        colour = np.array(PALETTE[class_id], np.float32) + self.rng.uniform(-12, 12, 3).astype(np.float32)
        shade = np.broadcast_to(np.asarray(shade, np.float32), mask.shape)[mask][:, None]
        self.image[mask] = colour + shade + texture * self.grain[mask]
        self.labels[mask] = class_id

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        return ((self.xx - cx) / rx) ** 2 + ((self.yy - cy) / ry) ** 2 < 1.0

    def profile(self, base: float, amplitude: float, octaves: int = 4) -> np.ndarray:
        """A ridge line y(x): a sum of sines of doubling frequency and halving amplitude."""
        x = np.arange(self.w, dtype=np.float32) / self.w
        y = np.full(self.w, base, np.float32)
        for k in range(octaves):
            freq = self.rng.uniform(1.0, 2.5) * 2**k
            y -= amplitude / 2**k * (0.5 + 0.5 * np.sin(2 * np.pi * freq * x + self.rng.uniform(0, 2 * np.pi)))
        return y


def draw_landscape(seed: int, index: int, size: tuple[int, int]) -> Landscape:
    """Draw landscape number `index` of the sample with the given seed at `size` (width, height)."""
    rng = np.random.default_rng([seed, index])
    c = _Canvas(rng, *size)
    w, h, yy, xx = c.w, c.h, c.yy, c.xx
    horizon = h * rng.uniform(0.4, 0.6)

    c.paint(np.ones((h, w), bool), SKY, shade=60 * yy / h, texture=2.0)
    if rng.random() < 0.7:
        clouds = np.zeros((h, w), bool)
        for _ in range(rng.integers(2, 6)):
            cx, cy, rx = rng.uniform(0, w), rng.uniform(0.05, 0.3) * h, rng.uniform(0.06, 0.14) * w
            for dx in (-0.6, 0.0, 0.6):  # three lobes make a cloud
                clouds |= c.ellipse(cx + dx * rx, cy + rng.uniform(-0.2, 0.2) * rx * 0.4, rx * 0.7, rx * 0.3)
        c.paint(clouds, CLOUDS, texture=3.0)

    if rng.random() < 0.8:
        ridge = c.profile(horizon, rng.uniform(0.2, 0.35) * h)
        mountain = (yy > ridge[None, :]) & (yy <= horizon)
        c.paint(mountain, MOUNTAIN, shade=-25 * (yy - ridge.min()) / h)
        if rng.random() < 0.5:
            snowline = max(ridge.min(), 0) + rng.uniform(0.04, 0.08) * h
            c.paint(mountain & (yy < snowline), SNOW, texture=2.0)
    elif rng.random() < 0.6:
        c.paint((yy > c.profile(horizon, 0.1 * h, octaves=2)[None, :]) & (yy <= horizon), HILL)

    ground = yy > horizon
    if rng.random() < 0.4:
        shore = horizon + (rng.uniform(0.15, 0.3) * h) + 0.02 * h * np.sin(xx / w * 2 * np.pi * rng.uniform(1, 3))
        c.paint(ground & (yy <= shore), SEA, shade=20 * (yy - horizon) / h, texture=4.0)
        beach = rng.random() < 0.5
        c.paint(ground & (yy > shore), SAND if beach else GRASS, texture=8.0)
        land_top = shore
    else:
        c.paint(ground, GRASS, shade=30 * (yy - horizon) / h, texture=10.0)
        land_top = np.full_like(xx, horizon)
        if rng.random() < 0.5:
            centre = w * rng.uniform(0.3, 0.7) + 0.1 * w * np.sin((yy - horizon) / h * 2 * np.pi * rng.uniform(1, 2))
            width = 0.01 * w + 0.15 * w * (yy - horizon) / h
            c.paint(ground & (np.abs(xx - centre) < width), RIVER, texture=4.0)

    on_land = yy > land_top + 0.02 * h
    rocks = np.zeros((h, w), bool)
    for _ in range(rng.integers(0, 4)):
        cy = rng.uniform(horizon + 0.1 * h, h)
        rx = rng.uniform(0.02, 0.06) * w * (cy / h)
        rocks |= c.ellipse(rng.uniform(0, w), cy, rx, rx * 0.6) & on_land
    c.paint(rocks, ROCK)

    trees = np.zeros((h, w), bool)
    for _ in range(rng.integers(0, 7)):
        base_y = rng.uniform(horizon + 0.05 * h, h * 0.95)
        if not on_land[min(int(base_y), h - 1)].any():
            continue
        x0, scale = rng.uniform(0, w), 0.05 + 0.2 * (base_y - horizon) / h
        r = scale * h * 0.35
        trunk = (np.abs(xx - x0) < r * 0.15) & (yy < base_y) & (yy > base_y - r * 1.2)
        trees |= (trunk | c.ellipse(x0, base_y - r * 1.8, r, r * 1.1)) & (yy <= base_y)
    c.paint(trees, TREE, texture=10.0)

    image = np.clip(c.image, 0, 255).astype(np.uint8)
    return Landscape(image, c.labels, caption(set(np.unique(c.labels).tolist())))


def caption(present: set[int]) -> str:
    """A one-line caption naming every class visible in the picture."""
    parts = []
    if MOUNTAIN in present:
        parts.append("snowy mountains" if SNOW in present else "mountains")
    if HILL in present:
        parts.append("rolling hills")
    if SEA in present:
        parts.append("the sea and a sandy beach" if SAND in present else "the sea and a grassy shore")
    elif GRASS in present:
        parts.append("green meadows")
    parts += [words for cls, words in ((RIVER, "a winding river"), (ROCK, "rocks"), (TREE, "trees")) if cls in present]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"a landscape with {listed} under {'a cloudy sky' if CLOUDS in present else 'a clear sky'}"
