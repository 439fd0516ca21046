"""Browser page latency against dataset size: a page of 50 samples (the last page, and a class filter's last page)
served by `pipeline browse`'s API from a one-shard dataset and from one of many shards, once every index is
built; and the rate of building the indexes, from the class counts pack writes beside each shard and, for shards
packed before it did, by decoding every seg.png. Each shard is a copy of one shard of tiny samples in the
training format (drawn landscapes, their labels, Canny sketches), with the stats, class counts and card pack
writes. Prints one JSON object per line; the last is the ratio (small dataset's page time / large dataset's: 1
means a page costs the same at any size).

    .venv/bin/python benchmarks/browse.py [--shards 40] [--per-shard 1000]
    .venv/bin/python benchmarks/browse.py --quick    # the smallest run: checks that it works, figures mean nothing
"""
import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from annotators.base import encode
from pipeline.browse import Dataset, Filters
from pipeline.pack import write_classes
from pipeline.landscapes import draw_landscape
from shardio.layout import Layout, shard_name
from shardio.shards import class_counts, shard_writer, write_stats

SKY = 156


def one_shard(path: Path, samples: int) -> tuple[dict, dict]:
    """Write a training shard of `samples` tiny landscapes; returns its pack-style stats and class counts by key."""
    drawn = [draw_landscape(0, i, (48, 32)) for i in range(8)]
    images, seg_classes = np.zeros(256, np.int64), {}
    with shard_writer(path) as writer:
        for n in range(samples):
            d = drawn[n % len(drawn)]
            seg = encode("seg.png", d.labels)
            images[np.unique(d.labels)] += 1
            seg_classes[f"{n:012x}"] = class_counts(d.labels)
            writer.write({"__key__": f"{n:012x}", "jpg": cv2.imencode(".jpg", d.image[..., ::-1])[1].tobytes(),
                          "seg.png": seg, "sketch.png": encode("sketch.png", cv2.Canny(d.image, 100, 200)),
                          "txt": d.caption.encode(),
                          "json": json.dumps({"key": f"{n:012x}", "split": "train", "annotators": {}}).encode()})
    present = {"seg": samples, "sketch": samples, "clip": 0, "txt": samples, "clip_text": 0}
    stats = {"fingerprint": "bench", "samples": samples, "splits": {"train": samples}, "present": present,
             "class_images": images.tolist()}
    return stats, seg_classes


def dataset(root: Path, shards: int, template: Path, stats: dict, seg_classes: dict | None) -> Layout:
    """A packed dataset of `shards` copies of the template shard (without class counts beside them: None)."""
    layout = Layout(root, "bench")
    layout.shards.mkdir(parents=True)
    for i in range(shards):
        shutil.copyfile(template, layout.shards / shard_name("train", i))
        if seg_classes is not None:
            write_classes(layout.shards / shard_name("train", i), stats["fingerprint"], seg_classes)
        write_stats(layout.shards / shard_name("train", i), stats)
    total = shards * stats["samples"]
    card = {"label_map": "coco-stuff-182", "samples": total, "splits": {"train": total}, "annotators": {},
            "coverage": {}, "classes": [], "rejects": {}}
    layout.card_json.write_text(json.dumps(card))
    return layout


def build_seconds(layout: Layout) -> float:
    """Seconds to build the index of every shard (none cached)."""
    dataset = Dataset(layout)
    start = time.perf_counter()
    for shard in dataset.stats:
        dataset.index(shard)
    return time.perf_counter() - start


def page_seconds(layout: Layout, repeats: int) -> tuple[float, float]:
    """(seconds to build every index, median seconds of the last page, unfiltered and of a class) on a fresh open."""
    build = build_seconds(layout)
    times = []
    for _ in range(repeats):
        fresh = Dataset(layout)  # indexes cached on disk, none in memory: what a newly started server does
        for f in (Filters(), Filters(cls=SKY)):
            total = fresh.page(f, 0, 0)["total"]
            start = time.perf_counter()
            assert len(fresh.page(f, total - 50, 50)["samples"]) == 50
            times.append(time.perf_counter() - start)
    return build, float(np.median(times))


def main() -> None:
    """Run the benchmark and print its JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=40, help="shards of the large dataset")
    parser.add_argument("--per-shard", type=int, default=1000, help="samples per shard")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="the smallest run (3 shards of 60): checks that it works")
    args = parser.parse_args()
    if args.quick:
        args.shards, args.per_shard, args.repeats = 3, 60, 1
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.tar"
        stats, classes = one_shard(template, args.per_shard)
        _, small = page_seconds(dataset(Path(tmp) / "small", 1, template, stats, classes), args.repeats)
        build, large = page_seconds(dataset(Path(tmp) / "large", args.shards, template, stats, classes), args.repeats)
        decoding = build_seconds(dataset(Path(tmp) / "older", args.shards, template, stats, None))
    for name, value, unit in [
        ("large_samples", args.shards * args.per_shard, "samples"),
        ("index_build_samples_per_s", round(args.shards * args.per_shard / build, 1), "samples/s"),
        ("index_build_decoding_samples_per_s", round(args.shards * args.per_shard / decoding, 1), "samples/s"),
        ("page_ms_small", round(small * 1000, 2), "ms"), ("page_ms_large", round(large * 1000, 2), "ms"),
        ("ratio", round(small / large, 3), "x"),
    ]:
        print(json.dumps({"name": name, "value": value, "unit": unit}))


if __name__ == "__main__":
    main()
