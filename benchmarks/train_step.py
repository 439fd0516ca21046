"""The trainer's own overhead: a training step of a family's `tiny` configuration on CPU (loader, its phases, e.g.
G / D / R1, optimizer steps, EMA, gradient clipping, logging) against the bare forward + backward of the same
networks and loss on one batch held in memory, over the same step numbers (so a lazy phase runs on the same steps).

Both run in one process with the same torch threads (default one: on a loaded machine two threads mostly wait on
each other, which swamps what is measured) and denormals flushed as the loop does, in `--rounds` alternating
rounds (training window, then bare window), so load that comes and goes falls on both. Each is timed by the wall
clock and by this process's CPU time (the loop and its networks; the loader's worker processes run beside it, as
they would on any machine with a core to spare): on a loaded machine the wall clock varies by 2x between windows,
the CPU time by a few percent. Prints one JSON object per line: per clock the median seconds per step and the
median, lowest and highest of the rounds' ratios bare s/step / training s/step; the last line, `ratio`, is the
CPU one (1: the trainer costs nothing beyond the networks' own forward and backward; target >= 0.9).

    .venv/bin/python benchmarks/train_step.py [--model M] [--steps 20] [--rounds 3] [--workers 2] [--threads 1]
    .venv/bin/python benchmarks/train_step.py --quick    # the smallest run: checks that it works, figures mean nothing
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import torch  # noqa: E402
from train_shards import write_training_shards  # noqa: E402

from annotators.labelmaps import load_label_map  # noqa: E402
from train.data import ShardLoader, to_device  # noqa: E402
from train.families import REGISTRY, default_model  # noqa: E402
from train.loop import RunSpec, modality_masks, train  # noqa: E402
from train.models import family  # noqa: E402
from train.vgg import VGGRelu51  # noqa: E402


def vgg_of(fam):
    """The random-weight VGG-19 a family's loss takes, or None."""
    return VGGRelu51(None) if fam.uses_vgg else None


def emit(name, value, unit):
    print(json.dumps({"name": name, "value": round(value, 4), "unit": unit}), flush=True)


def training_seconds_per_step(fam, cfg, labels, urls, run_dir: Path, args) -> tuple[float, float]:
    """(wall, CPU) seconds per step of `train` over its steps `args.warmup` .. `args.warmup + args.steps - 1`. Wall:
    from the log's per-step times. CPU (this process's: the loop and its networks, not the loader's worker
    processes, which run beside it): a run `args.steps` longer minus a run of the warm-up alone, so start-up and the
    final grid and snapshot, which both do once, cancel out."""
    def run(steps: int, name: str) -> tuple[list[dict], float]:
        spec = RunSpec(run_dir / name, urls, urls, labels.num_classes, labels.colours, steps=steps,
                       batch_size=args.batch_size, workers=args.workers, shuffle_buffer=64, snapshot_every=10_000,
                       sample_every=10_000, grid_size=1, log_every=10)
        cpu = time.process_time()
        records = train(fam, cfg, vgg_of(fam), spec, progress=False)
        return records, time.process_time() - cpu

    _, warmup_cpu = run(args.warmup, "warmup")
    records, cpu = run(args.warmup + args.steps, "timed")
    first, last = records[args.warmup - 1], records[-1]  # `sec` is taken at the end of each step
    return (last["sec"] - first["sec"]) / args.steps, (cpu - warmup_cpu) / args.steps


def bare_seconds_per_step(fam, cfg, labels, urls, args) -> tuple[float, float]:
    """(wall, CPU) seconds per step of the loss's phases alone (forward and backward; no optimizer, EMA, clipping or
    logging) on one batch on the device, over the same step numbers as the timed training window."""
    loader = ShardLoader(urls, cfg.resolution, labels.num_classes, args.batch_size, workers=0, shuffle_buffer=64)
    batch = to_device(next(iter(loader)), torch.device("cpu"), labels.num_classes)
    torch.manual_seed(0)
    masks = modality_masks(len(batch["image"]), torch.device("cpu"))
    nets = fam.build(cfg, labels.num_classes)
    loss = fam.loss(*nets.values(), vgg_of(fam), cfg)

    def step(number: int) -> None:
        for phase in fam.phases:
            if not phase.due(number):
                continue
            net = nets[phase.network]
            for other in nets.values():
                other.requires_grad_(other is net)
            net.zero_grad(set_to_none=True)
            loss.accumulate_gradients(phase, batch, masks, torch.Tensor.backward)
        loss.end_step()

    for number in range(args.warmup):  # the same warm-up as training's window
        step(number)
    wall, cpu = time.perf_counter(), time.process_time()
    for number in range(args.warmup, args.warmup + args.steps):
        step(number)
    return (time.perf_counter() - wall) / args.steps, (time.process_time() - cpu) / args.steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(REGISTRY), default=default_model(),
                        help="the family trained [default: %(default)s, the project's own method]")
    parser.add_argument("--steps", type=int, default=20, help="steps timed per window (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=3, help="steps run before timing (at least 1)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating training and bare windows")
    parser.add_argument("--workers", type=int, default=2, help="loader worker processes of the training run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both")
    parser.add_argument("--images", type=int, default=32, help="distinct images in the benchmark shards")
    parser.add_argument("--batch-size", type=int, help="[default: the tiny configuration's]")
    parser.add_argument("--quick", action="store_true", help="the smallest run (one round of two steps of batch 2 "
                        "after one, 8 images, no loader workers): checks that it works")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.rounds, args.workers, args.images, args.batch_size = 2, 1, 1, 0, 8, 2
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as `train` sets it: the bare window must not be the one slowed by denormals
    fam = family(args.model)
    cfg = fam.config("tiny")
    args.batch_size = args.batch_size or cfg.batch_size
    labels = load_label_map("coco-stuff-182")
    trained, bare = [], []  # (wall, CPU) s/step per round
    with tempfile.TemporaryDirectory() as tmp:
        urls = [str(p) for p in write_training_shards(Path(tmp) / "shards", images=args.images, per_shard=8,
                                                      short_side=48)]
        for round_ in range(args.rounds):
            trained.append(training_seconds_per_step(fam, cfg, labels, urls, Path(tmp) / f"run{round_}", args))
            bare.append(bare_seconds_per_step(fam, cfg, labels, urls, args))
    for i, clock in enumerate(("wall", "cpu")):
        emit(f"train_step_{clock}_s", statistics.median(t[i] for t in trained), "s/step (median of rounds)")
        emit(f"bare_forward_backward_{clock}_s", statistics.median(b[i] for b in bare), "s/step (median of rounds)")
        ratios = [b[i] / t[i] for b, t in zip(bare, trained)]
        emit(f"{clock}_ratio_min", min(ratios), "bare / training s/step, lowest round")
        emit(f"{clock}_ratio_max", max(ratios), "bare / training s/step, highest round")
        emit(f"{clock}_ratio", statistics.median(ratios), "bare / training s/step, median of rounds")
    emit("ratio", statistics.median(b[1] / t[1] for b, t in zip(bare, trained)),
         "bare forward+backward CPU s/step per training CPU s/step (median of rounds)")

if __name__ == "__main__":
    main()
