"""Collectives the objective needs under data parallelism (a no-op in a single process): the global batch for
the contrastive losses and the global mean of the KL terms that drive the rebalancing."""
import torch
import torch.distributed as dist


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
