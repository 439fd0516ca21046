"""Sketch simplification (Simo-Serra et al. 2016), the fully-convolutional GAN model.

Layer list, key names (`layers.{i}.weight/bias`, Sequential indices of the convs) and the GAN model's input
normalisation follow the public PyTorch port of bobbens/sketch_simplification (`sketch_simplification_gan.pth`,
as used by VideoComposer): three stride-2 downsamplings, a 1024-wide middle, three 4x4 transposed-conv
upsamplings, sigmoid output. Input: grayscale in [0, 1], dark lines on white, sides a multiple of 8.
Other public layouts of the same 23 convolutions load too (`adapt_checkpoint`): the torch-1.x port's bare
`nn.Sequential` (model_gan.py: keys `0.weight`, `2.weight`, ...), and any prefix, mapped by order.
"""
import re

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import check_layout
from ..weights import WeightsError

GAN_MEAN = 0.9664114577640158
GAN_STD = 0.0858381272736797
MULTIPLE = 8

# (kind, in, out, kernel, stride, padding): "c" conv, "t" transposed conv; every layer but the last is ReLU'd.
LAYERS = (
    ("c", 1, 48, 5, 2, 2), ("c", 48, 128, 3, 1, 1), ("c", 128, 128, 3, 1, 1),
    ("c", 128, 128, 3, 2, 1), ("c", 128, 256, 3, 1, 1), ("c", 256, 256, 3, 1, 1),
    ("c", 256, 256, 3, 2, 1), ("c", 256, 512, 3, 1, 1), ("c", 512, 1024, 3, 1, 1),
    ("c", 1024, 1024, 3, 1, 1), ("c", 1024, 1024, 3, 1, 1), ("c", 1024, 1024, 3, 1, 1),
    ("c", 1024, 512, 3, 1, 1), ("c", 512, 256, 3, 1, 1),
    ("t", 256, 256, 4, 2, 1), ("c", 256, 256, 3, 1, 1), ("c", 256, 128, 3, 1, 1),
    ("t", 128, 128, 4, 2, 1), ("c", 128, 128, 3, 1, 1), ("c", 128, 48, 3, 1, 1),
    ("t", 48, 48, 4, 2, 1), ("c", 48, 24, 3, 1, 1), ("c", 24, 1, 3, 1, 1),
)


class SketchSimplifier(nn.Module):
    """Rough sketch (dark on white, [0, 1]) -> clean sketch (dark on white, [0, 1]), any size."""

    def __init__(self):
        super().__init__()
        modules = []
        for kind, cin, cout, k, s, p in LAYERS:
            modules += [(nn.Conv2d if kind == "c" else nn.ConvTranspose2d)(cin, cout, k, s, p), nn.ReLU()]
        modules[-1] = nn.Sigmoid()
        self.layers = nn.Sequential(*modules)

    def forward(self, sketch: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] in [0, 1] -> same shape; sides are replicate-padded to a multiple of 8, then cropped."""
        h, w = sketch.shape[-2:]
        padded = F.pad(sketch, (0, -w % MULTIPLE, 0, -h % MULTIPLE), mode="replicate")
        logits = self.layers[:-1]((padded - GAN_MEAN) / GAN_STD)
        return self.layers[-1](logits.float())[..., :h, :w]  # the sigmoid in fp32 under autocast: thresholded


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def adapt_checkpoint(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The simplifier's state dict (`layers.N.weight/bias`) from any layout of its 23 convolutions: the modules
    holding a weight and a bias, in natural order of their names (`0` < `2` < `10`), are the layers in order."""
    modules = sorted({key.rsplit(".", 1)[0] for key in state}, key=_natural)
    incomplete = [m for m in modules if {k for k in state if k.rsplit(".", 1)[0] == m} != {f"{m}.weight", f"{m}.bias"}]
    if len(modules) != len(LAYERS) or incomplete:
        detail = f" (incomplete: {incomplete[:3]})" if incomplete else ""
        raise WeightsError(f"sketch simplification: expected {len(LAYERS)} convolutions with a weight and a bias "
                           f"each, found {len(modules)} modules{detail}")
    return {f"layers.{2 * i}.{kind}": state[f"{module}.{kind}"] for i, module in enumerate(modules)
            for kind in ("weight", "bias")}


def check_file(path) -> None:
    """Raise WeightsError unless `path` holds the simplifier's 23 convolutions in a layout `adapt_checkpoint` reads."""
    check_layout(SketchSimplifier, path, "sketch simplification", adapt_checkpoint)
