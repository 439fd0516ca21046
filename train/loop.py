"""The training loop (after NVlabs stylegan3's training_loop): one code path for single-process CPU and
multi-GPU data parallelism under `torchrun` (env://, gradients all-reduced per phase). Supplement B: EMA of G,
modality dropout 0.5, mixed precision (on CUDA). The family says which networks it trains in which phases with which
Adam settings and gradient clipping (train/models.py: ModelFamily; PoE-GAN's Adam(0, 0.99) and clip at 10 are in
its folder); the first network is the generator, whose moving average draws the grids. The loop drives the
family's objective through the Loss interface (train/models.py), handing it each due phase and its backward."""
import copy
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from shardio.modalities import MODEL_MODALITIES

from . import checkpoint, distributed, run_config
from .dashboard import Dashboard, postfix
from .data import Preprocess, ShardLoader, to_device
from .ema import ema_beta
from .models import ModelFamily
from .samples import render_grid, save_grid
from .schedule import LinearDecay, schedule_for, set_rates

MODALITY_DROPOUT = 0.5  # B: dropout rate of modality dropout


@dataclass(frozen=True)
class RunSpec:
    """Everything one training run needs besides the networks: where, how long, how to load."""

    run_dir: Path
    train_urls: list[str]
    sample_urls: list[str]  # fixed conditions of the sample grids
    num_classes: int
    label_colours: object  # [num_classes, 3] uint8 palette for the grids
    steps: int
    seed: int = 0
    batch_size: int | None = None
    batch_gpu: int | None = None  # samples per accumulation round on one device; default: its whole share
    workers: int = 0
    shuffle_buffer: int = 1000
    epoch_batches: int = 1000
    ema_kimg: float | None = None  # None: batch * 10/32 kimg (train/ema.py)
    ema_rampup: float | None = 0.05
    ema_rate: float | None = None  # a fixed decay per step (ADM's --ema_rate), replacing the two above; None: off
    snapshot_every: int = 100  # steps between saves: weight snapshot + training state (a resume point)
    keep_states: int = 2  # the newest saves kept whole; older ones pruned (train/checkpoint.py)
    keep_snapshot_every: int | None = None  # weight snapshots kept for good at these steps; None: every one
    sample_every: int = 100
    log_every: int = 10  # steps between reads of the logged losses (each read waits for the GPU)
    mixed_precision: bool = True
    # autocast in this dtype with a loss scaler on the CPU, standing in for CUDA's fp16 AMP (scripts/gpu_check.py
    # --device cpu); None: the CPU trains in fp32
    amp_on_cpu: torch.dtype | None = None
    grid_size: int = 4
    tensorboard: bool = True  # event files in the run folder (train/dashboard.py)
    wandb_project: str | None = None  # Weights & Biases project; None: off
    identity: dict | None = None  # the run's identity (train/run_identity.py): W&B run id and config
    record: dict | None = None  # what each weight snapshot carries of the run's configuration (train/run_config.py)
    preprocess: Preprocess = Preprocess()  # resize or random crop, flips (supplement A; the dataset profile's)
    lr_schedule: LinearDecay | None = None  # None: the family's over `steps` (train/schedule.py)
    skip_bad_samples: bool = False  # an unreadable shard or unusable sample: skipped, counted, logged; else an error


def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers are copied. One multi-tensor op each (the
    same arithmetic as a lerp_ per tensor, without a Python call per parameter)."""
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - decay)
        buffers = list(ema.buffers())
        if buffers:
            torch._foreach_copy_(buffers, list(model.buffers()))


def modality_masks(batch_size: int, device) -> dict:
    """Each modality of each sample kept with probability 1 - 0.5 (modality dropout), drawn on `device` (no host
    copy per step)."""
    return {m: torch.rand(batch_size, device=device) >= MODALITY_DROPOUT for m in MODEL_MODALITIES}


def scaled_backward(scaler: torch.amp.GradScaler, rounds: int):
    """The backward the loop hands a loss for one phase: its total loss-scaled (under mixed precision) and divided
    by the accumulation rounds, so the gradients are the mean over them."""
    return lambda total: scaler.scale(total / rounds).backward()


def synchronised_batch_norm(module: torch.nn.Module, world: int, device: torch.device) -> torch.nn.Module:
    """With several GPUs, batch norm layers (SPADE's) as SyncBatchNorm: statistics over the global batch, as one
    GPU would see it (NCCL only; gloo on CPU keeps per-process statistics)."""
    if world > 1 and device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module


def accumulation_rounds(batch_size: int, world: int, batch_gpu: int | None) -> int:
    """Gradient accumulation rounds per step: each of `world` devices takes `batch_size / world` samples per step in
    rounds of `batch_gpu` (stylegan3's batch_gpu); a batch that does not split so is a ValueError naming the params."""
    if batch_size % world:
        raise ValueError(f"train batch_size {batch_size} is not divisible by the {world} processes")
    share = batch_size // world
    batch_gpu = batch_gpu or share
    if share % batch_gpu:
        raise ValueError(f"train batch_gpu {batch_gpu} does not divide the per-device batch {share} "
                         f"(batch_size {batch_size} / {world} processes)")
    return share // batch_gpu


def _split(tensors: dict, rounds: int) -> list[dict]:
    """`rounds` equal consecutive slices of every tensor along the batch axis."""
    if rounds == 1:
        return [tensors]
    chunks = {k: v.chunk(rounds) for k, v in tensors.items()}
    return [{k: c[i] for k, c in chunks.items()} for i in range(rounds)]


def _mean_terms(terms: list[dict]) -> dict:
    """The loss terms of one phase averaged over its accumulation rounds."""
    if len(terms) == 1:
        return terms[0]
    return {k: sum(t[k] for t in terms) / len(terms) for k in terms[0]}


def train(family: ModelFamily, cfg, vgg: torch.nn.Module | None, spec: RunSpec, progress: bool = True,
          processes: distributed.Processes | None = None) -> list[dict]:
    """Train (or resume from the newest training state in `spec.run_dir`, as rank 0 finds it) up to `spec.steps`;
    returns the log records of the steps run here. `processes`: the started process group (default: start it)."""
    processes = processes or distributed.start()
    rank, world, device = processes.rank, processes.world, processes.device
    torch.set_flush_denormal(True)  # CPU: denormal floats in late training slow every op by orders of magnitude
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed shapes: time the conv algorithms once, keep the best
    batch_size = spec.batch_size or cfg.batch_size
    rounds = accumulation_rounds(batch_size, world, spec.batch_gpu)
    torch.manual_seed(spec.seed)  # the same initial networks on every rank
    nets = {key: synchronised_batch_norm(net, world, device).to(device)
            for key, net in family.build(cfg, spec.num_classes).items()}
    G = next(iter(nets.values()))  # the generator
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    vgg = vgg.to(device) if vgg is not None else None
    settings = family.optimizer(cfg)
    opts = {}
    for key, net in nets.items():
        lr, betas = settings.adam(key)
        # fused: one kernel over all parameters (CPU and CUDA) instead of several ops per parameter from Python;
        # a training state saved before keeps its own setting on resume (load_state_dict restores the groups)
        opts[key] = torch.optim.Adam(net.parameters(), lr=lr, betas=betas, fused=True)
    base_lrs = {key: settings.adam(key)[0] for key in nets}
    lr_schedule = spec.lr_schedule or schedule_for(family.lr_decay, spec.steps)
    clip = settings.grad_clip or math.inf  # inf: the norm is logged, nothing clipped
    amp = spec.mixed_precision and (device.type == "cuda" or spec.amp_on_cpu is not None)
    amp_dtype = torch.float16 if device.type == "cuda" or spec.amp_on_cpu is None else spec.amp_on_cpu
    scalers = {key: torch.amp.GradScaler(device.type, enabled=amp) for key in nets}
    loader = ShardLoader(spec.train_urls, cfg.resolution, spec.num_classes, batch_size // world,
                         seed=spec.seed * 7919 + rank, workers=spec.workers, shuffle_buffer=spec.shuffle_buffer,
                         epoch_batches=spec.epoch_batches, preprocess=spec.preprocess,
                         pin_memory=device.type == "cuda", skip_bad=spec.skip_bad_samples)
    for module in nets.values():
        _broadcast(module, world)
    loss = family.loss(*nets.values(), vgg, cfg)
    checkpoint.seed_streams(spec.seed * 1_000_003 + rank + 1)  # then streams of its own per rank (noise, dropout)

    step = 0
    run_dir = spec.run_dir
    resume = distributed.on_rank0(lambda: checkpoint.latest_state(run_dir), processes)
    if resume is not None:
        weights = checkpoint.load(checkpoint.snapshot_path(run_dir, resume))
        state = checkpoint.load(checkpoint.state_path(run_dir, resume))
        for key, net in nets.items():
            net.load_state_dict(weights[key])
            opts[key].load_state_dict(state[f"opt_{key}"])
        G_ema.load_state_dict(weights[_ema_key(nets)])
        for name, scaler in scalers.items():
            load_scaler_state(scaler, state["scaler"][name])
        loss.load_state_dict(state["loss"])
        step = int(state["step"])
        _check_schedule(state, lr_schedule)
        resume_streams(state, rank, world, loader, spec.seed)
    fixed = _fixed_conditions(spec, cfg, device) if rank == 0 else None
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        _truncate_log(run_dir / "log.jsonl", step)
        checkpoint.prune(run_dir, spec.keep_states, spec.keep_snapshot_every)  # what a kill left before pruning

    ident = spec.identity or {}
    phases = tuple(phase.name for phase in family.phases)
    dashboard = Dashboard(run_dir, step, phases, tensorboard=spec.tensorboard and rank == 0,
                          wandb_project=spec.wandb_project if rank == 0 else None,
                          wandb_id=ident.get("fingerprint"), config=ident.get("params"))
    records, pending = [], []  # pending: this log interval's records, their losses still tensors on the device
    bar = tqdm(total=spec.steps, initial=step, desc="train", unit="step", disable=not progress or rank != 0)
    batches = iter(loader)
    t0, waited = time.perf_counter(), 0.0  # waited: seconds spent waiting for the loader's batches
    while step < spec.steps:
        before = time.perf_counter()
        batch = to_device(next(batches), device, spec.num_classes)
        waited += time.perf_counter() - before
        masks = modality_masks(len(batch["image"]), device)
        set_rates(opts, base_lrs, lr_schedule.factor(step))
        micro = list(zip(_split(batch, rounds), _split(masks, rounds)))
        losses = {}
        for phase in family.phases:
            if not phase.due(step):
                continue
            net, opt, scaler = nets[phase.network], opts[phase.network], scalers[phase.network]
            for other in nets.values():
                other.requires_grad_(other is net)
            opt.zero_grad(set_to_none=True)
            backward = scaled_backward(scaler, rounds)
            terms = []
            for micro_batch, micro_masks in micro:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                    terms.append(loss.accumulate_gradients(phase, micro_batch, micro_masks, backward))
            losses.update(_mean_terms(terms))
            _average_gradients(net, world)
            scaler.unscale_(opt)
            limit = clip if phase.clip else math.inf
            losses[f"{phase.name}_grad_norm"] = torch.nn.utils.clip_grad_norm_(net.parameters(), limit)
            if amp:
                losses[f"{phase.name}_skipped"] = skipped(scaler, opt)
            scaler.step(opt)
            scaler.update()
        loss.end_step()
        update_ema(G_ema, G, ema_beta(step * batch_size, batch_size, spec.ema_kimg, spec.ema_rampup, spec.ema_rate))
        step += 1
        pending.append({"step": step, **losses, **loss.log_state(),
                        **{f"lr_{key}": opt.param_groups[0]["lr"] for key, opt in opts.items()},
                        "images": step * batch_size, "sec": round(time.perf_counter() - t0, 3),
                        "data_sec": round(waited, 3)})
        bar.update(1)
        save = checkpoint.save_due(step, spec.steps, spec.snapshot_every, spec.keep_snapshot_every)
        if step % spec.log_every == 0 or save:
            read, pending = _read_values(pending), []
            records += read
            if rank == 0:
                with open(run_dir / "log.jsonl", "a") as f:
                    f.writelines(json.dumps(record) + "\n" for record in read)
                bar.set_postfix(postfix(read[-1], dashboard.log(read), phases), refresh=False)
        if rank == 0:
            if step % spec.sample_every == 0 or step == spec.steps:
                grid = render_grid(G_ema, fixed, spec.label_colours)
                save_grid(run_dir / f"samples-{step:06d}.png", grid)
                dashboard.grid(step, grid)
        if save:
            _save(run_dir, step, rank, world, nets, G_ema, opts, scalers, loss, loader, lr_schedule, spec.record)
            if rank == 0:
                checkpoint.prune(run_dir, spec.keep_states, spec.keep_snapshot_every)
    bar.close()
    dashboard.close()
    return records


def skipped(scaler: torch.amp.GradScaler, opt: torch.optim.Optimizer) -> torch.Tensor:
    """1 when the scaler, after `unscale_`, found inf/NaN gradients and so skips this optimiser step (while the
    loss scale calibrates, or on an overflow), else 0: a device tensor, read with the other logged values (no sync).
    The gradient norm logged with it is then inf/NaN and nothing was applied."""
    return torch.stack(list(scaler._found_inf_per_device(opt).values())).sum().clamp(max=1)


def load_scaler_state(scaler: torch.amp.GradScaler, state: dict) -> None:
    """Restore a loss scaler; the empty state of a disabled one (a CPU run resumed on a GPU) leaves it fresh."""
    if state:
        scaler.load_state_dict(state)


def resume_streams(state: dict, rank: int, world: int, loader: ShardLoader, seed: int) -> None:
    """This rank's loader position and RNG state from a training state. Saved by another number of processes
    (other hardware), they cannot be matched to ranks: each rank starts fresh streams one epoch past the saved
    ones, with a warning (the run continues, no longer exactly as one uninterrupted run)."""
    saved = len(state["loader"])
    if saved == world:
        loader.load_state_dict(state["loader"][rank])
        checkpoint.set_rng_state(state["rng"][rank])
        return
    warnings.warn(f"resuming a run of {saved} process(es) with {world}: data order and noise restart from new "
                  "streams, so the run will not repeat an uninterrupted one exactly")
    loader.load_state_dict({"epoch": max(int(s["epoch"]) for s in state["loader"]) + 1, "batch": 0})
    checkpoint.seed_streams(seed * 1_000_003 + world * (int(state["step"]) + 1) + rank)


def _fixed_conditions(spec: RunSpec, cfg, device) -> dict:
    """The same condition batch at every grid: the first batch of the sample shards for a fixed seed."""
    loader = ShardLoader(spec.sample_urls, cfg.resolution, spec.num_classes, spec.grid_size, seed=12345,
                         workers=0, shuffle_buffer=1, epoch_batches=1, preprocess=spec.preprocess)
    return to_device(next(iter(loader)), device, spec.num_classes)


def _read_values(records: list[dict]) -> list[dict]:
    """The records with every tensor value read as a float (0-d) or a list, all in one transfer (one GPU sync)."""
    keys = [(i, k) for i, r in enumerate(records) for k, v in r.items() if isinstance(v, torch.Tensor)]
    if not keys:
        return records
    tensors = [records[i][k].float().flatten() for i, k in keys]
    values = iter(torch.cat(tensors).tolist())
    out = [dict(r) for r in records]
    for (i, k), t in zip(keys, tensors):
        read = [next(values) for _ in range(t.numel())]
        out[i][k] = read[0] if records[i][k].dim() == 0 else read
    return out


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines after the resumed step (a killed run may have logged past its last training state)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


def _broadcast(module: torch.nn.Module, world: int) -> None:
    """Every rank starts from rank 0's parameters and buffers."""
    if world > 1:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def _average_gradients(module: torch.nn.Module, world: int) -> None:
    """Data parallelism as in stylegan3: one all-reduce of all gradients (absent ones as zeros) per phase, so
    parameters used outside `forward` (the contrastive temperatures) and phases that leave some unused are fine.
    A parameter no rank used keeps no gradient, as in one process: Adam then leaves its state alone (a zero
    gradient would decay its second moment and advance its step count). Which parameters some rank used is read
    back to the host (a GPU sync) only where this rank left one unused: a parameter it used, some rank used."""
    if world == 1:
        return
    params = list(module.parameters())
    used = torch.ones(len(params), device=params[0].device)  # filled on the device: no copy from the host
    unused_here = [i for i, p in enumerate(params) if p.grad is None]
    for i in unused_here:
        used[i] = 0.0
        params[i].grad = torch.zeros_like(params[i])
    flat = torch.cat([p.grad.flatten() for p in params] + [used])
    dist.all_reduce(flat)
    flat /= world
    *grads, used = flat.split([p.numel() for p in params] + [len(params)])
    for p, g, u in zip(params, grads, used.tolist() if unused_here else [1.0] * len(params)):
        p.grad = p.grad.copy_(g.view_as(p)) if u > 0 else None


def _gather(obj, world: int) -> list:
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _ema_key(nets: dict) -> str:
    """The snapshot key of the generator's moving average ("G_ema")."""
    return f"{next(iter(nets))}_ema"


def _check_schedule(state: dict, lr_schedule: LinearDecay) -> None:
    """Warn when a run resumes under another learning-rate schedule than the one it was saved with."""
    saved = state.get("lr_schedule")
    if saved is not None and not lr_schedule.same_rates(saved):
        warnings.warn(f"resuming a run saved with learning-rate schedule {saved} under {lr_schedule.state_dict()} "
                      "(params steps or lr_decay_start changed): the rates follow the new schedule from here")


def _save(run_dir, step, rank, world, nets, G_ema, opts, scalers, loss, loader, lr_schedule, record) -> None:
    """Weight snapshot (each network, then the generator's moving average, and the run's `record`) and training
    state of `step` (each network's optimiser, the learning-rate schedule, every rank's loader position and RNG
    state)."""
    loaders = _gather(loader.state_dict(), world)
    rngs = _gather(checkpoint.rng_state(), world)
    if rank != 0:
        return
    checkpoint.save(checkpoint.snapshot_path(run_dir, step),
                    {**{key: net.state_dict() for key, net in nets.items()}, _ema_key(nets): G_ema.state_dict(),
                     **run_config.entry(record)})
    checkpoint.save(checkpoint.state_path(run_dir, step), {
        "step": step, **{f"opt_{key}": opt.state_dict() for key, opt in opts.items()}, "loss": loss.state_dict(),
        "scaler": {name: s.state_dict() for name, s in scalers.items()}, "loader": loaders, "rng": rngs,
        "lr_schedule": lr_schedule.state_dict()})
