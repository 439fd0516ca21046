"""Training throughput of a family's `tiny` configuration on CPU against the loader's throughput alone.

Prints one JSON object per line; the last is the ratio loader samples/s / training images/s (> 1: the loader is
not the bottleneck).

    .venv/bin/python benchmarks/training.py [--model M] [--steps 20] [--workers 2]
    .venv/bin/python benchmarks/training.py --quick    # the smallest run: checks that it works, figures mean nothing
"""
import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from train_shards import write_training_shards  # noqa: E402

from annotators.labelmaps import load_label_map  # noqa: E402
from train.data import ShardLoader  # noqa: E402
from train.families import REGISTRY, default_model  # noqa: E402
from train.loop import RunSpec, train  # noqa: E402
from train.models import family  # noqa: E402
from train.vgg import VGGRelu51  # noqa: E402


def emit(name, value, unit):
    print(json.dumps({"name": name, "value": round(value, 3), "unit": unit}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(REGISTRY), default=default_model(),
                        help="the family trained [default: %(default)s, the project's own method]")
    parser.add_argument("--steps", type=int, default=20, help="training steps timed (after warm-up steps)")
    parser.add_argument("--workers", type=int, default=2, help="loader worker processes")
    parser.add_argument("--images", type=int, default=32, help="distinct images in the benchmark shards")
    parser.add_argument("--batch-size", type=int, help="[default: the tiny configuration's]")
    parser.add_argument("--quick", action="store_true", help="the smallest run (one step of batch 2 without warm-up, "
                        "8 images, no loader workers, a one-column sample grid): checks that it works")
    args = parser.parse_args()
    warmup, grid_size = 2, 4
    if args.quick:
        args.steps, args.workers, args.images, args.batch_size, warmup, grid_size = 1, 0, 8, 2, 0, 1
    fam = family(args.model)
    cfg = fam.config("tiny")
    batch_size = args.batch_size or cfg.batch_size
    labels = load_label_map("coco-stuff-182")
    with tempfile.TemporaryDirectory() as tmp:
        urls = [str(p) for p in write_training_shards(Path(tmp) / "shards", images=args.images, per_shard=8,
                                                      short_side=48)]
        loader = ShardLoader(urls, cfg.resolution, labels.num_classes, batch_size, workers=args.workers,
                             shuffle_buffer=64, epoch_batches=10_000)
        batches = iter(loader)
        next(batches)  # worker start-up is not throughput
        t = time.perf_counter()
        n = sum(len(b["image"]) for b in itertools.islice(batches, 3 * args.steps))
        loader_rate = n / (time.perf_counter() - t)
        emit("loader_samples_per_s", loader_rate, "samples/s")

        spec = RunSpec(Path(tmp) / "run", urls, urls, labels.num_classes, labels.colours, steps=warmup,
                       batch_size=batch_size, workers=args.workers, shuffle_buffer=64, snapshot_every=10_000,
                       sample_every=10_000, grid_size=grid_size)
        vgg = VGGRelu51(None) if fam.uses_vgg else None
        if warmup:
            train(fam, cfg, vgg, spec, progress=False)  # warm-up, then resume from its state
        records = train(fam, cfg, vgg, RunSpec(**{**spec.__dict__, "steps": warmup + args.steps}), progress=False)
        seconds = records[-1]["sec"]
        train_rate = args.steps * batch_size / seconds
        emit("train_images_per_s", train_rate, "images/s")
    emit("ratio", loader_rate / train_rate, "loader samples/s per training image/s")


if __name__ == "__main__":
    main()
