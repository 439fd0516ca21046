"""Checks on one real GPU of what the CPU test suite can only simulate (docs/gpu.md): a few minutes.

Trains each model family's `tiny` configuration for a few steps on CUDA with mixed precision (sample grids,
snapshots, pinned batches), resumes it, resumes a CPU run's state on the GPU, checks that a sample grid leaves
CUDA's RNG alone, counts the host syncs of a training phase, and compares each annotator's GPU output (under its
autocast) with its CPU output and the device record its shards get. Prints one line per check and exits non-zero
if one fails.
Usage: .venv/bin/python scripts/gpu_check.py [--device cuda:0]
"""
import argparse
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from train_shards import write_training_shards  # noqa: E402

from annotators.base import Item, build  # noqa: E402
from annotators.labelmaps import load_label_map  # noqa: E402
from annotators.runtime import computed_on  # noqa: E402
from pipeline.params.annotate import ClipParams, SegParams, SketchParams  # noqa: E402
from train.data import ShardLoader, to_device  # noqa: E402
from train.distributed import Processes  # noqa: E402
from train.loop import RunSpec, modality_masks, train  # noqa: E402
from train.models import family  # noqa: E402
from train.samples import render_grid  # noqa: E402
from train.vgg import VGGRelu51  # noqa: E402

LABELS = load_label_map("coco-stuff-182")
failed = []


def report(name: str, ok: bool, detail: str) -> None:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        failed.append(name)


def check_training(model: str, urls: list[str], tmp: Path, device: torch.device) -> None:
    fam = family(model)
    cfg = fam.config("tiny")
    gpu = Processes(0, 1, device)
    spec = RunSpec(tmp / model, urls, urls, LABELS.num_classes, LABELS.colours, steps=4, batch_size=4, batch_gpu=2,
                   shuffle_buffer=8, epoch_batches=4, snapshot_every=2, sample_every=2, log_every=2)
    first = train(fam, cfg, VGGRelu51(None), spec, progress=False, processes=gpu)
    resumed = train(fam, cfg, VGGRelu51(None), replace(spec, steps=6), progress=False, processes=gpu)
    values = [v for r in first + resumed for v in r.values() if isinstance(v, float)]
    report(f"train {model}", np.isfinite(values).all() and (spec.run_dir / "samples-000004.png").is_file()
           and [r["step"] for r in resumed] == [5, 6], "4 AMP steps in rounds of 2, grids, snapshots, resume to 6")
    cpu_dir = tmp / f"{model}-cpu"
    train(fam, cfg, VGGRelu51(None), replace(spec, run_dir=cpu_dir, steps=2), progress=False,
          processes=Processes(0, 1, torch.device("cpu")))
    records = train(fam, cfg, VGGRelu51(None), replace(spec, run_dir=cpu_dir, steps=3), progress=False, processes=gpu)
    report(f"resume {model} from a CPU run", [r["step"] for r in records] == [3], "empty scaler state, CPU RNG")

    G, D = (net.to(device) for net in fam.networks(cfg, LABELS.num_classes))
    batch = to_device(next(iter(ShardLoader(urls, cfg.resolution, LABELS.num_classes, 4, shuffle_buffer=1))),
                      device, LABELS.num_classes)
    before = torch.cuda.get_rng_state(device)
    render_grid(G.eval(), batch, LABELS.colours)
    report(f"grid {model}", torch.equal(torch.cuda.get_rng_state(device), before), "CUDA RNG untouched by a grid")
    loss = fam.loss(G.train(), D, VGGRelu51(None).to(device), cfg)
    masks = modality_masks(4, device)
    for step in (1, 2):  # the first step may move loss state to the GPU (PoE-GAN's KL weights); count the second
        torch.cuda.synchronize(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            with torch.autocast("cuda", dtype=torch.float16):
                loss.accumulate_gradients("G", batch, masks, step)
            loss.end_step()
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
    report(f"host syncs {model}", not syncs, f"{len(syncs)} in a G phase after the first step (0 expected) {syncs[:3]}")


def check_annotators(device: torch.device, tmp: Path) -> None:
    rng = np.random.default_rng(0)
    items = [Item(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), ["a mountain lake"]) for _ in range(2)]
    for name, params, ext in (("seg", SegParams(weights="random", long_side=128), "seg.png"),
                              ("sketch", SketchParams(weights="random", simplify_weights="random"), "sketch.png"),
                              ("clip", ClipParams(weights="random"), "clip.npy")):
        outputs = {}
        for dev in ("cpu", str(device)):
            annotator = build(name, params, tmp)
            annotator.setup(dev)
            outputs[dev] = np.stack([out[ext] for out in annotator(items)]).astype(np.float32)
        a, b = outputs.values()
        agreement = (np.sum(a * b) / np.linalg.norm(a) / np.linalg.norm(b) if ext.endswith(".npy")
                     else float((a == b).mean()))
        record = computed_on(device, params.precision)  # what annotate writes into each shard's stats
        report(f"annotator {name}", agreement > 0.95 and record["precision"] == params.precision and bool(
            record.get("gpu")), f"GPU ({params.precision} autocast) vs CPU agreement {agreement:.3f}; shards "
               f"record {record}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this script checks GPU behaviour (the test suite covers the CPU)")
    device = torch.device(args.device)
    torch.cuda.set_device(device)
    print(f"device {torch.cuda.get_device_name(device)}, torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        urls = [str(p) for p in write_training_shards(tmp / "shards", images=8, per_shard=4, short_side=40)]
        for model in ("poegan", "spade-seg", "spade-sketch"):
            check_training(model, urls, tmp, device)
        check_annotators(device, tmp)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
