"""Evaluation against its floor at a size a CPU affords: `pipeline evaluate` of an untrained model of the project's own
method (the registry's default, at the sample profile's `tiny` config: 32 px) with FID and KID under evaluate's five
conditions on `--images` test images (1,000 by default; the sample's drawn landscapes written as packed shards, so no
ingest or annotate runs), with a cold reference cache, as a fresh CLI subprocess. Its floor is
`bare_feature_seconds`: torch-fidelity's Inception on as many images as evaluate must embed (per test image one
generated image per condition plus the test image itself), the network built before the clock. The gap is what
evaluate does beside features: its start-up (imports, the generator, the extractor), reading and decoding the test
shards, the generator's forward under each condition, the FID/KID statistics and the report.

Prints JSON lines: wall and CPU seconds of evaluate and of its floor, evaluate's peak resident memory (process
tree, sampled every 50 ms), and last the ratio of the floor's wall time to evaluate's (the rate of evaluate over
its floor's). `cpu_ratio` is the same in CPU seconds (evaluate's process tree; the floor's process), which holds
up better on a loaded machine. One torch thread in both (`--threads`).

    .venv/bin/python benchmarks/evaluation.py [--images 1000]
    .venv/bin/python benchmarks/evaluation.py --quick    # 8 test images: checks that it works, figures mean nothing
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from train.families import default_model  # noqa: E402

CONDITIONS = ["unconditional", "text", "seg", "sketch", "all"]
MODEL = default_model()


def write_dataset(data: Path, params_file: Path, test_images: int, batch_size: int) -> None:
    """Packed train (4) and test shards of the sample's landscapes under `data`, params evaluating FID and KID
    under CONDITIONS with random Inception weights, and an untrained snapshot of MODEL (evaluation's cost
    does not depend on the weights)."""
    import torch
    from train_shards import write_training_shards  # tests/train_shards.py

    from pipeline.commands.common import StageContext
    from pipeline.params import load_params
    from shardio.layout import Layout
    from train import checkpoint
    from train.eval_plan import model_config
    from train.models import family

    shards = data / "sample" / "shards"
    write_training_shards(shards, images=4, per_shard=4, short_side=36)
    write_training_shards(shards, images=test_images, per_shard=100, short_side=36, split="test", seed=1)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["evaluate"].update(metrics=["fid", "kid"], conditions=CONDITIONS, num_images=test_images,
                           batch_size=batch_size)
    raw["datasets"]["sample"]["overrides"].update({"evaluate.inception_weights": "random"})
    params_file.write_text(yaml.safe_dump(raw))
    params = load_params(params_file)
    stage = StageContext(params.for_dataset("sample"), "sample", params.profile("sample"), Layout(data, "sample"))
    torch.manual_seed(0)
    G = family(MODEL).generator(model_config(stage, MODEL), 182)
    checkpoint.save(checkpoint.snapshot_path(stage.layout.training(MODEL), 2), {"G_ema": G.state_dict()})


def run_evaluate(data: Path, params_file: Path, threads: int) -> tuple[float, float, float]:
    """(wall s, CPU s, peak MB of resident memory over the process tree) of `pipeline evaluate` in a fresh
    subprocess (its stderr shown when it fails)."""
    from scale import run_stage  # benchmarks/scale.py: a stage as a subprocess, its peak memory sampled

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    wall, peak = run_stage(["evaluate", "--model", MODEL], data, params_file, dataset="sample")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, cpu, peak


def bare_feature_seconds(weights: Path, resolution: int, batch_size: int, images: int) -> tuple[float, float]:
    """(wall s, CPU s of this process) of the bare Inception feature extraction of `images` pictures of
    `resolution` px in batches of `batch_size`, with the weights file `weights` (the network built and run once
    before the clock: evaluate's start-up is not the floor's)."""
    import torch

    from train.metrics.fid import load_inception

    extractor, _ = load_inception(str(weights), weights.parent)
    rng = np.random.default_rng(0)
    batch = torch.from_numpy(rng.integers(0, 256, (batch_size, 3, resolution, resolution), np.uint8))
    with torch.no_grad():
        extractor(batch[:1])
        start, cpu = time.perf_counter(), time.process_time()
        for first in range(0, images, batch_size):
            extractor(batch[:min(batch_size, images - first)].contiguous())
        return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    """Run the benchmark and print its JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="test images evaluated")
    parser.add_argument("--batch-size", type=int, default=32, help="evaluate.batch_size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of evaluate and of its floor")
    parser.add_argument("--quick", action="store_true", help="8 test images: checks that it works")
    args = parser.parse_args()
    if args.quick:
        args.images = 8
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data, params_file = Path(tmp) / "data", Path(tmp) / "params.yaml"
        write_dataset(data, params_file, args.images, args.batch_size)
        wall, cpu, peak = run_evaluate(data, params_file, args.threads)
        extractions = args.images * (len(CONDITIONS) + 1)
        floor_wall, floor_cpu = bare_feature_seconds(data / "cache" / "fid" / "random-inception.pth", 32,
                                                     args.batch_size, extractions)
    lines = [("test_images", args.images, "test images (32 px, 5 conditions, FID and KID)"),
             ("extractions", extractions, "Inception forwards of the floor"),
             ("evaluate_s", round(wall, 2), "s wall"), ("evaluate_cpu_s", round(cpu, 2), "s CPU (process tree)"),
             ("evaluate_peak_rss_mb", round(peak, 1), "MB"),
             ("floor_s", round(floor_wall, 2), "s wall"), ("floor_cpu_s", round(floor_cpu, 2), "s CPU"),
             ("cpu_ratio", round(floor_cpu / cpu, 3), "x (floor CPU s / evaluate CPU s)"),
             ("ratio", round(floor_wall / wall, 3), "x (floor wall s / evaluate wall s)")]
    for name, value, unit in lines:
        print(json.dumps({"name": name, "value": value, "unit": unit}), flush=True)


if __name__ == "__main__":
    main()
