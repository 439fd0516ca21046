"""Layers of supplement B: equalized learning rate, ±256 clamp (fp32 and mixed precision), anti-aliased resampling."""
import math

import pytest
import torch

from train.layers import CLAMP, SLOPE, EqualConv2d, EqualLinear, blur_kernel, downsample, lrelu, upsample


def test_equalized_lr_keeps_unit_weights_and_scales_at_run_time():
    torch.manual_seed(0)
    layer = EqualLinear(400, 300)
    assert abs(layer.weight.std().item() - 1) < 0.02  # stored N(0, 1): Adam sees the same scale everywhere
    x = torch.randn(2000, 400)
    assert abs(layer(x).std().item() - 1) < 0.05  # the runtime 1/sqrt(fan_in) keeps activations at unit scale
    conv = EqualConv2d(16, 8, 3)
    assert conv.scale == 1 / math.sqrt(16 * 9)


def test_outputs_are_clamped_to_256_in_fp32_as_under_mixed_precision():
    layer = EqualLinear(4, 2)
    x = torch.full((1, 4), 1e4)
    assert layer(x).abs().max() <= CLAMP  # fp32 inference computes what mixed-precision training trained
    assert EqualConv2d(4, 2, 1)(torch.full((1, 4, 2, 2), 1e4)).abs().max() <= CLAMP
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).abs().max() <= CLAMP
        assert EqualConv2d(4, 2, 1)(torch.full((1, 4, 2, 2), 1e4)).abs().max() <= CLAMP
    assert CLAMP == 256


def test_leaky_relu_slope_is_0_2():
    y = lrelu(torch.tensor([-1.0, 1.0]))
    assert (y[0] / y[1]).item() == pytest.approx(-SLOPE) and SLOPE == 0.2


def test_resampling_is_anti_aliased():
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 2.0 - 1  # highest frequency
    down = downsample(checker[None, None], blur_kernel())
    assert down.shape[-1] == 8
    assert down[..., 1:-1, 1:-1].abs().max() < 1e-6  # naive striding would alias it to a constant +-1
    flat = torch.ones(1, 3, 8, 8)
    up = upsample(flat, blur_kernel())
    assert up.shape[-1] == 16
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.ones(1, 3, 12, 12))  # preserves the mean, no holes
