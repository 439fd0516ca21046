"""Building blocks used throughout PoE-GAN (supplement B): equalized learning rate, anti-aliased resampling,
leaky ReLU 0.2, and outputs of every conv/linear clamped to ±256."""
import math

import torch
import torch.nn.functional as F
from torch import nn

# B: "clamp the output of every convolutional/fully-connected layer to ±256" (for mixed precision). A property of
# the model, not of the autocast context: fp32 inference (grids, evaluation) computes what fp16 training trained.
CLAMP = 256.0
SLOPE = 0.2  # B: leaky ReLU with slope 0.2
_BLUR = (1.0, 3.0, 3.0, 1.0)  # binomial low-pass of anti-aliased resampling (Zhang 2019, B ref. 28)


def _clamp(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-CLAMP, CLAMP)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU with slope 0.2, scaled by sqrt(2) to keep unit variance (equalized-lr convention)."""
    return F.leaky_relu(x, SLOPE) * math.sqrt(2)


class EqualLinear(nn.Module):
    """Fully-connected layer with equalized learning rate: N(0,1) weights scaled by 1/sqrt(fan_in) at run time."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = 1 / math.sqrt(in_dim)

    def forward(self, x):
        return _clamp(F.linear(x, self.weight * self.scale, self.bias.to(x.dtype)))


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate; `down=True` blurs then strides by 2 (anti-aliased)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, down: bool = False, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.down = down
        if down:
            self.register_buffer("blur", blur_kernel(), persistent=False)  # not in checkpoints: a constant

    def forward(self, x):
        if self.down:
            x = downsample(x, self.blur)
        w = self.weight * self.scale
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return _clamp(F.conv2d(x, w.to(x.dtype), bias, padding=self.weight.shape[-1] // 2))


def blur_kernel() -> torch.Tensor:
    """The 4x4 binomial low-pass (sum 1) of anti-aliased resampling; modules hold it as a buffer, so it lives on
    their device and no resample copies it from the host."""
    taps = torch.tensor(_BLUR)
    k = torch.outer(taps, taps)
    return k / k.sum()


def _depthwise(kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return kernel.to(x.dtype).expand(x.shape[1], 1, 4, 4)


def downsample(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Halve the resolution: the low-pass `kernel` (`blur_kernel()`), then keep every second pixel."""
    return F.conv2d(x, _depthwise(kernel, x), stride=2, padding=1, groups=x.shape[1])


def upsample(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Double the resolution: zero insertion and the same low-pass (gain 4 keeps the mean)."""
    return F.conv_transpose2d(x, _depthwise(kernel * 4, x), stride=2, padding=1, groups=x.shape[1])


class Upsample(nn.Module):
    """`upsample` as a module holding its kernel."""

    def __init__(self):
        super().__init__()
        self.register_buffer("kernel", blur_kernel(), persistent=False)  # not in checkpoints: a constant

    def forward(self, x):
        return upsample(x, self.kernel)


class MLP(nn.Sequential):
    """Equalized-lr fully-connected layers with leaky ReLU between them (none after the last)."""

    def __init__(self, dims: list[int]):
        layers = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(EqualLinear(a, b))
            if i < len(dims) - 2:
                layers.append(LeakyReLU())
        super().__init__(*layers)


class LeakyReLU(nn.Module):
    """`lrelu` as a module."""

    def forward(self, x):
        return lrelu(x)
