"""What `pipeline train` decides before its first step, and the `--dry-run` report of it: the per-GPU batch
(batch_gpu) by the memory estimate, the accumulation rounds, the save plan and the most disk the run will use."""
import math
import os

import click
import torch

from train.memory import GB

DRY_RUN_GPU_GB = 80.0  # what a dry run sizes for without a visible GPU or --gpu-memory


def gpu_capacity(gpu_memory: float | None, device: torch.device, dry_run: bool) -> tuple[float | None, str]:
    """The memory (bytes) batch_gpu is sized for and where that figure comes from; None on a CPU run without
    --gpu-memory (it then takes its whole share in one round, as a CPU has no fixed memory to fit)."""
    if gpu_memory:
        return gpu_memory * GB, f"{gpu_memory:g} GB (--gpu-memory)"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return props.total_memory, f"{props.total_memory / GB:.1f} GB ({props.name})"
    if dry_run:
        return DRY_RUN_GPU_GB * GB, f"{DRY_RUN_GPU_GB:g} GB (no GPU visible to torch and no --gpu-memory)"
    return None, "the CPU (no --gpu-memory)"


def choose_batch_gpu(fam, cfg, num_classes: int, model: str, batch_gpu: int | None, batch_size: int, world: int,
                     capacity: float | None, where: str) -> int | None:
    """The run's per-GPU batch: train.<model>.batch_gpu, else, when `capacity` is known, the largest that divides
    a GPU's share of the batch and whose estimated peak fits it (train/memory.py). Says which and why, and warns
    when the estimated peak exceeds `capacity`; a batch that does not split is a ClickException."""
    from train.loop import accumulation_rounds
    from train.memory import BACKWARD_FACTOR, estimate

    try:
        accumulation_rounds(batch_size, world, batch_gpu)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    share = batch_size // world
    spread = f"batch_size {batch_size} over {world} process(es): {share} per process and step"
    if capacity is None:
        chosen = batch_gpu or share
        click.echo(f"{spread}; batch_gpu {chosen} ({_source(model, batch_gpu)}; no memory estimate on {where}): "
                   f"{share // chosen} accumulation round(s) per step")
        return batch_gpu
    memory = estimate(fam, cfg, num_classes)
    chosen = batch_gpu or memory.batch_gpu(share, capacity)
    peak = memory.peak(chosen)
    why = (_source(model, batch_gpu) if batch_gpu else
           f"null in train.{model}.batch_gpu: the largest that divides {share} and fits {where}")
    click.echo(f"{spread}; batch_gpu {chosen}, estimated peak {peak / GB:.1f} GB ({why}): "
               f"{share // chosen} accumulation round(s) per step")
    click.echo(f"memory estimate: weights, gradients, Adam and G_ema {memory.static / GB:.1f} GB + "
               f"{memory.per_sample * BACKWARD_FACTOR / GB:.2f} GB per sample (fp32 activations of the training "
               f"forward on fake CUDA x {BACKWARD_FACTOR} for backward; mixed precision needs less; VGG-19, the "
               f"D phase and fragmentation not counted: train/memory.py)")
    if peak > capacity:
        largest = memory.largest_batch(capacity)
        click.echo(f"warning: batch_gpu {chosen}'s estimated peak {peak / GB:.1f} GB exceeds {where}"
                   + (f" (the largest per-GPU batch that fits: {largest})" if largest else
                      " (even one sample does not fit)") + ": the run may run out of memory", err=True)
    return chosen


def _source(model: str, batch_gpu: int | None) -> str:
    return f"train.{model}.batch_gpu" if batch_gpu else f"train.{model}.batch_gpu null: the whole share"


def dry_run_world(nproc: int | None) -> tuple[int, str]:
    """The processes a dry run plans for: --nproc, else torchrun's WORLD_SIZE, else 1."""
    if nproc:
        return nproc, "--nproc"
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"]), "WORLD_SIZE"
    return 1, "no --nproc or WORLD_SIZE"


def print_save_plan(nets: dict, section, model: str, steps: int, resolution: int, batch_size: int) -> None:
    """The saves, what of them is kept, the sample grids, and the most disk the run will use."""
    from train.disk_plan import disk_plan
    from train.loop import RunSpec

    plan = disk_plan(nets, section, steps, resolution, RunSpec.grid_size)
    p = f"train.{model}"
    click.echo(f"saves: every {plan.snapshot_every} steps ({plan.snapshot_every * batch_size:,} images; "
               f"{p}.snapshot_every) and at step {steps}, each a weight snapshot of {plan.snapshot / GB:.2f} GB and "
               f"a training state of {plan.state / GB:.2f} GB; the newest {plan.keep_states} kept whole "
               f"({p}.keep_states)")
    epoch = section.epoch_batches
    replay = epoch - math.gcd(plan.snapshot_every, plan.keep_snapshot_every or 0, epoch)  # furthest into an epoch
    click.echo(f"resume: saves fall at loader epoch ends ({p}.epoch_batches {epoch}), no data is decoded again"
               if not replay else f"resume: a resume decodes up to {replay} batches of its loader epoch again "
               f"({p}.snapshot_every is no multiple of epoch_batches {epoch})")
    kept = (f"every {plan.keep_snapshot_every} steps ({p}.keep_snapshot_every)" if plan.keep_snapshot_every else
            f"all ({p}.keep_snapshot_every null)")
    click.echo(f"weight snapshots kept for good: {kept}: {plan.kept_snapshots} of {plan.snapshot / GB:.2f} GB")
    click.echo(f"sample grids: every {plan.sample_every} steps ({p}.sample_every): {plan.grids} of at most "
               f"{plan.grid / 1e6:.1f} MB (raw pixels)" + (", each again in TensorBoard's event file"
                                                          if plan.tensorboard else ""))
    click.echo(f"most disk the run will use: {plan.most() / GB:.1f} GB ({plan.keep_states + 1} saves while the "
               f"newest is written, the kept snapshots, the grids; log lines not counted)")
