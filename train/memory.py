"""Peak GPU memory of training a configuration at a per-GPU batch, estimated on any machine: the family's training
forward (a GAN's: the generator and discriminator forward of the G phase) runs on fake CUDA tensors (PyTorch's
FakeTensorMode: shapes, no data) while the bytes of live tensors are counted; weights, gradients, Adam moments of
every network and the generator's EMA copy are counted from the parameters; backward is a measured factor on the
forward's peak."""
import inspect
import math
import weakref
from dataclasses import dataclass

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from shardio.modalities import MODEL_MODALITIES

from .loop import modality_masks

GB = 1e9
# peak over forward + backward / peak of the forward, measured with LiveBytes on real CPU tensors (batch 2):
# PoE-GAN tiny 1.002, coco-64 1.004, SPADE tiny 1.13 -- backward frees saved activations as it makes gradients
BACKWARD_FACTOR = 1.15


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of the tensors that ops create (not views or in-place results) while they are alive,
    and the peak of that count."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        returns = func._schema.returns
        outputs = [out] if len(returns) == 1 else list(out)
        for ret, value in zip(returns, outputs):
            if ret.alias_info is None:
                for tensor in tree_leaves(value):
                    if isinstance(tensor, torch.Tensor):
                        self._track(tensor)
        return out

    def _track(self, tensor: torch.Tensor) -> None:
        size = tensor.untyped_storage().nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(tensor, self._free, size)

    def _free(self, size: int) -> None:
        self.live -= size


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes: `static` (weights, gradients, Adam moments, G's EMA) and, per sample and fixed, the training
    forward's peak; the training peak at batch b is static + factor * (fixed + b * per_sample)."""

    static: int
    fixed: int
    per_sample: int

    def peak(self, batch_gpu: int) -> float:
        """Estimated peak bytes of a training step with `batch_gpu` samples per round on one GPU."""
        return self.static + BACKWARD_FACTOR * (self.fixed + batch_gpu * self.per_sample)

    def largest_batch(self, capacity: float) -> int:
        """The largest per-GPU batch whose estimated peak fits `capacity` bytes (0: not even one sample)."""
        return max(0, math.floor((capacity / BACKWARD_FACTOR - self.static / BACKWARD_FACTOR - self.fixed)
                                 / self.per_sample))

    def batch_gpu(self, share: int, capacity: float) -> int:
        """The largest per-GPU batch that divides `share` (a GPU's samples per step) and whose estimated peak fits
        `capacity` bytes; 1 when not even one sample fits (the caller warns)."""
        fits = max(1, self.largest_batch(capacity))
        return max(b for b in range(1, min(share, fits) + 1) if share % b == 0)


def gan_forward(nets: dict, cond: dict, masks: dict):
    """A GAN's G phase forward: G, then D on its output."""
    G, D = nets.values()
    image, extras = G(cond, masks)
    takes_masks = len(inspect.signature(D.forward).parameters) == 3
    return image, extras, (D(image, cond, masks) if takes_masks else D(image, cond))


def forward_peak(family, nets: dict, cfg, num_classes: int, batch: int, device) -> int:
    """Peak live bytes of the family's training forward on a uniform-noise batch."""
    r, d = cfg.resolution, device
    cond = {"image": torch.rand(batch, 3, r, r, device=d), "seg": torch.rand(batch, num_classes, r, r, device=d),
            "sketch": torch.rand(batch, 1, r, r, device=d),
            "text": torch.randn(batch, getattr(cfg, "clip_dim", 8), device=d),
            "clip_image": torch.randn(batch, getattr(cfg, "clip_dim", 8), device=d)}
    cond["style"] = cond["image"]
    masks = modality_masks(batch, d)
    with LiveBytes() as live:
        out = (family.training_forward or gan_forward)(nets, cond, masks)
        del out
    return live.peak


def estimate(family, cfg, num_classes: int) -> MemoryEstimate:
    """The memory estimate of training `cfg` (fp32 activations: mixed precision keeps most in fp16, about half)."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        with torch.device("cuda"):
            nets = family.build(cfg, num_classes)
        # batches of 2 and 4: batch norm (SPADE) needs more than one value per channel
        two, four = (forward_peak(family, nets, cfg, num_classes, b, "cuda") for b in (2, 4))
    params = [sum(p.numel() * p.element_size() for p in net.parameters()) for net in nets.values()]
    static = 4 * sum(params) + params[0]  # weights, gradients, two Adam moments; and the generator's EMA
    per_sample = (four - two) // 2
    return MemoryEstimate(static, max(0, two - 2 * per_sample), per_sample)


@dataclass(frozen=True)
class GenerationEstimate:
    """Bytes of generating (evaluation, `pipeline generate`): `static` (the generator's weights) and, per sample and
    fixed, the peak of its forward under no_grad with the batch's conditions on the device; the peak at batch b is
    static + fixed + b * per_sample (no backward, no optimizer)."""

    static: int
    fixed: int
    per_sample: int

    def peak(self, batch: int) -> float:
        """Estimated peak bytes of generating `batch` images at once on one GPU."""
        return self.static + self.fixed + batch * self.per_sample

    def largest_batch(self, capacity: float) -> int:
        """The largest batch whose estimated peak fits `capacity` bytes (0: not even one image)."""
        return max(0, math.floor((capacity - self.static - self.fixed) / self.per_sample))


def generation_peak(family, nets: dict, cfg, num_classes: int, batch: int, device) -> int:
    """Peak live bytes of one generator forward under no_grad, counting the batch's conditions as evaluation holds
    them on the device (`data.to_device` of a loader batch: the segmentation one-hot there). A family with its own
    training forward (a diffusion model's: one denoising pass) runs that: a sampler holds one pass at a time."""
    from .data import to_device

    r, dim = cfg.resolution, getattr(cfg, "clip_dim", 8)
    loader = {"image": torch.rand(batch, 3, r, r), "seg": torch.zeros(batch, r, r, dtype=torch.uint8),
              "sketch": torch.rand(batch, 1, r, r), "text": torch.randn(batch, dim),
              "clip_image": torch.randn(batch, dim)}
    masks = {m: torch.full((batch,), m != "style", device=device) for m in MODEL_MODALITIES}  # all given but the image
    with torch.no_grad(), LiveBytes() as live:
        cond = to_device(loader, device, num_classes)
        out = family.training_forward(nets, cond, masks) if family.training_forward else nets["G"](cond, masks)
        del out, cond
    return live.peak


def generation_estimate(family, cfg, num_classes: int) -> GenerationEstimate:
    """The memory estimate of generating with `cfg`'s generator in fp32, as evaluation runs it (a fitted family
    by its base family's generator, which it steers)."""
    if family.fitted is not None:
        from .models import family as named

        family = named(family.fitted.base)
    with FakeTensorMode(allow_non_fake_inputs=True):
        with torch.device("cuda"):
            G = family.generator(cfg, num_classes).eval()
        two, four = (generation_peak(family, {"G": G}, cfg, num_classes, b, "cuda") for b in (2, 4))
    static = sum(t.numel() * t.element_size() for t in [*G.parameters(), *G.buffers()])
    per_sample = (four - two) // 2
    return GenerationEstimate(static, max(0, two - 2 * per_sample), per_sample)
