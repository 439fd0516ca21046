"""A CUDA stand-in for device-placement tests on a machine without a GPU: under PyTorch's FakeTensorMode,
modules built inside `on_cuda()` get fake CUDA parameters, forward passes run on shapes alone, and an op mixing
a CUDA and a CPU tensor raises as it would on a GPU (backward needs a CUDA context). Import the code under test
before entering the mode: a module imported inside it makes its module-level tensors fake for good."""
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import DynamicOutputShapeException, FakeTensor, FakeTensorMode
from torch.utils._mode_utils import no_dispatch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map, tree_map_only
from torch.utils.weak import WeakIdKeyDictionary

CUDA = torch.device("cuda", 0)


def _numpy(tensor: FakeTensor) -> np.ndarray:
    if tensor.device.type != "cpu":  # as torch does for a real CUDA tensor
        raise TypeError(f"can't convert {tensor.device} device type tensor to numpy; use .cpu() first")
    return np.zeros(tensor.shape, str(tensor.dtype).removeprefix("torch."))


def _module_to(module: torch.nn.Module, *args, **kwargs) -> torch.nn.Module:
    """Module.to for fake mode, which cannot swap a parameter for its converted copy: entries are replaced."""
    device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)

    def convert(t):
        return t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None)

    for m in module.modules():
        for key, p in m._parameters.items():
            if p is not None:
                m._parameters[key] = torch.nn.Parameter(convert(p), requires_grad=p.requires_grad)
        for key, b in m._buffers.items():
            if b is not None:
                m._buffers[key] = convert(b)
    return module


class _Autocast(torch.autocast):
    """torch.autocast, which turns itself off for "cuda" when CUDA is unavailable, told that it is available
    while it starts (it sets dispatcher flags only: fake CUDA tensors then run fp16 ops as on a GPU)."""

    def __init__(self, *args, **kwargs):
        real = torch.cuda.is_available, torch.cuda.is_bf16_supported
        torch.cuda.is_available = torch.cuda.is_bf16_supported = lambda *a, **k: True
        try:
            super().__init__(*args, **kwargs)
        finally:
            torch.cuda.is_available, torch.cuda.is_bf16_supported = real


@pytest.fixture
def fake_cuda(monkeypatch):
    """Every tensor made inside the test is fake; real constants (module globals) count as CPU tensors; a fake
    CPU tensor's `.numpy()` is zeros of its shape and dtype, so code runs past its numpy boundary (values are
    meaningless: only placement is under test); `Module.to` converts in fake mode; autocast works on CUDA."""
    monkeypatch.setattr(FakeTensor, "numpy", _numpy, raising=False)
    monkeypatch.setattr(torch.nn.Module, "to", _module_to)
    monkeypatch.setattr(torch, "autocast", _Autocast)
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
    batch["clip_image"] = torch.randn(n, clip_dim, device=device)
    batch["style"] = batch["image"]
    return batch


def on_device(tensors, device=CUDA) -> bool:
    """Every tensor in a (nested) output is on `device`."""
    flat = tree_leaves(tensors)
    return all(t.device == device for t in flat if isinstance(t, torch.Tensor))



class HostToDeviceCopies(TorchDispatchMode):
    """Records every op that reads a host tensor (not a 0-d scalar) and writes a CUDA one: in a hot loop each is a
    synchronous copy. `ops`: their names; `host`: the host tensors they read, in order."""

    def __init__(self):
        super().__init__()
        self.ops, self.host = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        host = [t for t in inputs if t.device.type == "cpu" and t.dim() > 0]
        if host and any(isinstance(t, torch.Tensor) and t.device.type == "cuda" for t in tree_leaves(out)):
            self.ops.append(str(func))
            self.host += host
        return out


class ValueReads(TorchDispatchMode):
    """Counts reads of a tensor's value into Python (`.item()`, `float(t)`, `if t:`): on a GPU each waits for it."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


aten = torch.ops.aten


def _reads_the_device(func, inputs: list, kwargs: dict) -> bool:
    """The op moves a value from a device to the host: on a GPU it waits for the device."""
    if func is aten._local_scalar_dense.default:
        return inputs[0].device.type != "cpu"
    if func is aten._to_copy.default:
        to = kwargs.get("device")
        return to is not None and to.type == "cpu" and inputs[0].device.type != "cpu"
    return func is aten.copy_.default and inputs[0].device.type == "cpu" and inputs[1].device.type != "cpu"


class KnownValues(TorchDispatchMode):
    """Fake tensors have no values. Under this mode (entered inside `fake_cuda`), a tensor of at most LIMIT elements
    whose inputs all have values (fills, Python scalars, real tensors, other such tensors; never a random draw or a
    network's weights) keeps the values it would have, computed on the CPU beside it, so host code reading one runs
    as on a GPU: which experts a request's modality masks select, a scheduler's lookups in its tables. Reads of an
    unknown tensor still raise. `device_reads` counts the ops that bring a value from the device to the host (a
    copy to the CPU, an `.item()`): each waits for the device on a GPU."""

    LIMIT = 1024  # a diffusion schedule's 1000-entry tables

    def __init__(self):
        super().__init__()
        self.values = WeakIdKeyDictionary()
        self.device_reads = 0

    def _value(self, t: torch.Tensor) -> torch.Tensor | None:
        return self.values.get(t) if isinstance(t, FakeTensor) else t  # a real tensor is its own value

    def _compute(self, func, args, kwargs):
        """The op on the inputs' values, on the CPU."""
        def real(a):
            if isinstance(a, torch.Tensor):  # a copy: an in-place op must not write to a real tensor
                return self._value(a).clone()
            return torch.device("cpu") if isinstance(a, torch.device) else a
        with no_dispatch():  # real tensors in, real compute
            args, kwargs = tree_map(real, (args, kwargs))
            return func(*args, **kwargs)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        self.device_reads += _reads_the_device(func, inputs, kwargs)
        known = [self._value(t) for t in inputs]
        real = None
        if (torch.Tag.nondeterministic_seeded not in func.tags
                and all(v is not None and v.numel() <= self.LIMIT for v in known)):
            real = self._compute(func, args, kwargs)
            if func is aten._local_scalar_dense.default:
                return real
        try:
            out = func(*args, **kwargs)
        except DynamicOutputShapeException:  # nonzero and the like: the values give the shape
            if real is None:
                raise
            out = tree_map_only(torch.Tensor, lambda r: torch.empty_strided(r.shape, r.stride(), dtype=r.dtype,
                                                                            device=inputs[0].device), real)
        values = tree_leaves(real) if real is not None else [None] * len(tree_leaves(out))
        for fake, value in zip(tree_leaves(out), values):
            if isinstance(fake, FakeTensor):
                if isinstance(value, torch.Tensor) and value.numel() <= self.LIMIT:
                    self.values[fake] = value
                else:  # also an in-place op on a known tensor with an unknown input: it is unknown now
                    self.values.pop(fake, None)
        return out
