"""Where the generators' latent noise comes from: the global RNG while training, a private generator of its own
seed for sample grids and evaluation, so rendering them never moves or reseeds a training stream (CPU or CUDA)."""
from contextlib import contextmanager
from contextvars import ContextVar

import torch

_private: ContextVar[torch.Generator | None] = ContextVar("private_noise", default=None)


def randn_like(x: torch.Tensor) -> torch.Tensor:
    """Standard normal noise shaped like `x`, on its device: from the enclosing `private_noise`, else global."""
    generator = _private.get()
    if generator is None:
        return torch.randn_like(x)
    # drawn on the CPU, then moved: the same noise on every device, and no device generator to create
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device, non_blocking=True)


def generator() -> torch.Generator | None:
    """The enclosing `private_noise` block's generator (for libraries that take one), else None: global."""
    return _private.get()


@contextmanager
def private_noise(seed: int):
    """Within the block, `randn_like` draws from a fresh generator seeded with `seed`."""
    token = _private.set(torch.Generator().manual_seed(seed))
    try:
        yield
    finally:
        _private.reset(token)
