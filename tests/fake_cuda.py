"""A CUDA stand-in for device-placement tests on a machine without a GPU: under PyTorch's FakeTensorMode,
modules built inside `on_cuda()` get fake CUDA parameters, forward passes run on shapes alone, and an op mixing
a CUDA and a CPU tensor raises as it would on a GPU. (Backward needs a CUDA context: use the meta device.) Import the code under test before entering the mode:
a module imported inside it makes its module-level tensors fake for good."""
from contextlib import contextmanager

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

CUDA = torch.device("cuda", 0)


@pytest.fixture
def fake_cuda():
    """Every tensor made inside the test is fake; real constants (module globals) count as CPU tensors."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        yield


@contextmanager
def on_cuda():
    """Factory calls without a device default to CUDA: for building modules only, never around the code
    under test (it would hide the CPU tensors it makes)."""
    with torch.device(CUDA):
        yield


def condition_batch(num_classes: int, clip_dim: int, resolution: int, n: int = 2, device=CUDA) -> dict:
    """A training batch of the loader's layout (uniform noise) on `device`."""
    r = resolution
    batch = {"image": torch.rand(n, 3, r, r, device=device) * 2 - 1, "text": torch.randn(n, clip_dim, device=device),
             "seg": torch.rand(n, num_classes, r, r, device=device), "sketch": torch.rand(n, 1, r, r, device=device)}
    batch["style"] = batch["image"]
    return batch


def on_device(tensors, device=CUDA) -> bool:
    """Every tensor in a (nested) output is on `device`."""
    flat = torch.utils._pytree.tree_leaves(tensors)
    return all(t.device == device for t in flat if isinstance(t, torch.Tensor))
