"""The processes of one training run: one, or one per GPU under `torchrun` (env://). The process group comes
first, then rank 0 alone decides what all share (the run folder, the step to resume from) and tells the others.
Below, the collectives the objective needs (no-ops in a single process): the global batch for the contrastive
losses and the global mean of the KL terms that drive the rebalancing."""
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from . import devices

# rank 0 writes 1024-px snapshots and sample grids while the other ranks wait in a collective
TIMEOUT = timedelta(hours=1)


@dataclass(frozen=True)
class Processes:
    """This process's rank, the world size and this process's device."""

    rank: int
    world: int
    device: torch.device


def start(allow_cpu: bool = True) -> Processes:
    """Join the process group when torchrun set WORLD_SIZE > 1 (each rank on the GPU of its LOCAL_RANK, chosen
    before the group starts, as NCCL needs), else run as the only process. Without `allow_cpu`, a CPU run where
    GPUs were expected (train/devices.py) is a DeviceError."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if not cuda and not allow_cpu:
        devices.refuse_cpu_fallback(world)
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", init_method="env://", timeout=TIMEOUT,
                                device_id=device if cuda else None)
    return Processes(dist.get_rank() if world > 1 else 0, world, device)


def on_rank0(fn, processes: Processes):
    """`fn()` run by rank 0 alone, its result (or its exception) returned (raised) on every rank; the others wait
    for it, so this is also a barrier."""
    if processes.world == 1:
        return fn()
    box = [None]
    if processes.rank == 0:
        try:
            box = [(True, fn())]
        except Exception as err:  # noqa: BLE001 - every rank must stop with rank 0's error, not hang
            box = [(False, err)]
    dist.broadcast_object_list(box, src=0)
    ok, value = box[0]
    if not ok:
        raise value
    return value


def gather_to_rank0(obj, processes: Processes) -> list | None:
    """Every rank's `obj` (picklable) as a list in rank order on rank 0, None on the others; a collective."""
    if processes.world == 1:
        return [obj]
    out = [None] * processes.world if processes.rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def stop() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """Processes in the default group; 1 without torch.distributed."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.rows, ctx.world = dist.get_rank(), len(x), len(parts)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        local = grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]
        return local * ctx.world  # see gather_batch


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """Every rank's `x` concatenated in rank order (equal shapes). Gradients flow into this rank's slice only, as
    CLIP and XMC-GAN gather their embeddings; they are scaled by the world size because every rank computes the
    same loss of the gathered batch and the loop then averages gradients, which together give the single-process
    gradient of that loss."""
    if world_size() == 1:
        return x
    if x.dtype == torch.bool:
        return _GatherWithGrad.apply(x.to(torch.uint8)).bool()
    return _GatherWithGrad.apply(x)


def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The mean of `x` over ranks (a copy; `x` itself unchanged)."""
    if world_size() == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / world_size()
