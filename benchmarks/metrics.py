"""Evaluation cost: Inception feature throughput (what FID/KID cost per image on this machine), seg-consistency
and sketch F-score throughput at 256 px, and the reference-statistics cache (first evaluation vs a second one).

Prints one JSON object per line; the last is the ratio of reference-feature time without the cache to the time
with it (how much a second evaluation saves). Runs on random Inception weights in torch-fidelity's layout, which
cost the same as the real ones.

    .venv/bin/python benchmarks/metrics.py [--images 16]
    .venv/bin/python benchmarks/metrics.py --quick    # the smallest run: checks that it works, figures mean nothing
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import numpy as np  # noqa: E402
from metric_fixtures import smooth_images, write_random_inception  # noqa: E402

from pipeline.params.stages import EvaluateParams  # noqa: E402
from train.metrics.base import EvalContext, Reference  # noqa: E402
from train.metrics.fid import reference_features  # noqa: E402
from train.metrics.seg_consistency import seg_scores  # noqa: E402
from train.metrics.sketch_consistency import sketch_scores  # noqa: E402


def emit(name, value, unit):
    print(json.dumps({"name": name, "value": round(value, 4), "unit": unit}), flush=True)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="images per measurement")
    parser.add_argument("--quick", action="store_true", help="the smallest run (2 images): checks that it works")
    args = parser.parse_args()
    if args.quick:
        args.images = 2
    rng = np.random.default_rng(0)

    maps = rng.integers(0, 182, (args.images, 256, 256), dtype=np.uint8)
    seconds = timed(lambda: seg_scores(np.roll(maps, 3, axis=2), maps))
    emit("seg_consistency_maps_per_s", args.images / seconds, "maps/s")
    sketches = np.where(rng.random((args.images, 256, 256)) < 0.05, 255, 0).astype(np.uint8)
    seconds = timed(lambda: sketch_scores(np.roll(sketches, 2, axis=1), sketches, 0.0075 * np.hypot(256, 256)))
    emit("sketch_fscore_pairs_per_s", args.images / seconds, "pairs/s")

    with tempfile.TemporaryDirectory() as tmp:
        weights = write_random_inception(Path(tmp) / "inception.pth")
        ctx = EvalContext(EvaluateParams(inception_weights=str(weights)), Path(tmp), Path(tmp) / "cache")
        images = smooth_images(args.images, size=256)
        reference = Reference("bench", "test", args.images, 256, lambda: iter([images]))
        reference_features(reference, ctx)  # loads the network; later timings are the features alone
        for path in (Path(tmp) / "cache").iterdir():
            path.unlink()
        miss = timed(lambda: reference_features(reference, ctx))
        emit("inception_images_per_s", args.images / miss, "images/s")
        hit = timed(lambda: reference_features(reference, ctx))
        emit("reference_cache_hit_s", hit, "s")
    emit("ratio", miss / hit, "reference features: computed / read from the cache")


if __name__ == "__main__":
    main()
