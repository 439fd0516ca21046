"""The trainer's own overhead: a training step of the `tiny` PoE-GAN on CPU (loader, G / D / R1 phases, optimizer
steps, EMA, gradient clipping, logging) against the bare forward + backward of the same networks and loss on one
batch held in memory, over the same step numbers (so R1 runs on the same steps).

Both run in one process with the same torch threads (default one: on a loaded machine two threads mostly wait on
each other, which swamps what is measured) and denormals flushed as the loop does, in `--rounds` alternating
rounds (training window, then bare window), so load that comes and goes falls on both. Prints one JSON object per
line; the last is the ratio bare seconds per step / training seconds per step, the median of the rounds' ratios
(1: the trainer costs nothing beyond the networks' own forward and backward; target >= 0.9); `ratio_min` and
`ratio_max` give their spread.

    .venv/bin/python benchmarks/train_step.py [--steps 20] [--rounds 3] [--workers 2] [--threads 1]
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
from train.loop import RunSpec, modality_masks, train  # noqa: E402
from train.models import family  # noqa: E402
from train.vgg import VGGRelu51  # noqa: E402


def emit(name, value, unit):
    print(json.dumps({"name": name, "value": round(value, 4), "unit": unit}), flush=True)


def training_seconds_per_step(fam, cfg, labels, urls, run_dir: Path, args) -> float:
    """Seconds per step of a fresh `train` run between its step `args.warmup` and its last (the first steps, which
    start the loader and allocate, and the final snapshot are outside the window)."""
    spec = RunSpec(run_dir, urls, urls, labels.num_classes, labels.colours, steps=args.warmup + args.steps,
                   batch_size=args.batch_size, workers=args.workers, shuffle_buffer=64, snapshot_every=10_000,
                   sample_every=10_000, grid_size=1, log_every=10)
    records = train(fam, cfg, VGGRelu51(None), spec, progress=False)
    first, last = records[args.warmup], records[-1]  # `sec` is taken at the end of each step
    return (last["sec"] - first["sec"]) / (last["step"] - first["step"])


def bare_seconds_per_step(fam, cfg, labels, urls, args) -> float:
    """Seconds per step of the loss's phases alone (forward and backward; no optimizer, EMA, clipping or logging)
    on one batch on the device, over the same step numbers as the timed training window."""
    loader = ShardLoader(urls, cfg.resolution, labels.num_classes, args.batch_size, workers=0, shuffle_buffer=64)
    batch = to_device(next(iter(loader)), torch.device("cpu"), labels.num_classes)
    torch.manual_seed(0)
    masks = modality_masks(len(batch["image"]), torch.device("cpu"))
    G, D = fam.networks(cfg, labels.num_classes)
    loss = fam.loss(G, D, VGGRelu51(None), cfg)

    def step(number: int) -> None:
        for phase, net in (("G", G), ("D", D), ("Dreg", D)):
            if phase == "Dreg" and not loss.r1_due(number):
                continue
            G.requires_grad_(net is G), D.requires_grad_(net is D)
            net.zero_grad(set_to_none=True)
            loss.accumulate_gradients(phase, batch, masks, number)
        loss.end_step()

    for number in range(args.warmup + 1):  # the same warm-up as training's window
        step(number)
    start = time.perf_counter()
    for number in range(args.warmup + 1, args.warmup + args.steps):
        step(number)
    return (time.perf_counter() - start) / (args.steps - 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps timed per window (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=3, help="steps run before timing")
    parser.add_argument("--rounds", type=int, default=3, help="alternating training and bare windows")
    parser.add_argument("--workers", type=int, default=2, help="loader worker processes of the training run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both")
    parser.add_argument("--images", type=int, default=32, help="distinct images in the benchmark shards")
    parser.add_argument("--batch-size", type=int, help="[default: the tiny configuration's]")
    parser.add_argument("--quick", action="store_true", help="the smallest run (one round of two steps of batch 2 "
                        "without warm-up, 8 images, no loader workers): checks that it works")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.rounds, args.workers, args.images, args.batch_size = 2, 0, 1, 0, 8, 2
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as `train` sets it: the bare window must not be the one slowed by denormals
    fam = family("poegan")
    cfg = fam.config("tiny")
    args.batch_size = args.batch_size or cfg.batch_size
    labels = load_label_map("coco-stuff-182")
    trained, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        urls = [str(p) for p in write_training_shards(Path(tmp) / "shards", images=args.images, per_shard=8,
                                                      short_side=48)]
        for round_ in range(args.rounds):
            trained.append(training_seconds_per_step(fam, cfg, labels, urls, Path(tmp) / f"run{round_}", args))
            bare.append(bare_seconds_per_step(fam, cfg, labels, urls, args))
    ratios = [b / t for b, t in zip(bare, trained)]
    emit("train_step_s", statistics.median(trained), "s/step (median of rounds)")
    emit("bare_forward_backward_s", statistics.median(bare), "s/step (median of rounds)")
    emit("ratio_min", min(ratios), "bare / training s/step, lowest round")
    emit("ratio_max", max(ratios), "bare / training s/step, highest round")
    emit("ratio", statistics.median(ratios), "bare forward+backward s/step per training s/step (median of rounds)")


if __name__ == "__main__":
    main()
