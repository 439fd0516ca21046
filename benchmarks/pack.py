"""Pack throughput: `pipeline pack` of the scaled-up sample (image shards + seg, sketch, clip annotation shards)
against a plain byte copy of the same tars, both in MB/s of input read. The copy writes what pack writes, without
the tar work: the input tars of each training shard one after the other into one file. The headline ratio is
against that copy synced to disk file by file, as pack syncs each training shard before its marker (a crash loses
only the shards in flight); the ratio against the unsynced copy, which only fills the page cache and never waits
on the disk at this size, is printed too (docs/scale.md says why it is not the floor). Annotation shards are
made in the contract format without the models (sketch = Canny edges, seg = the sample's own label maps or a flat
map, clip = random unit vectors): pack only copies their bytes. Prints one JSON object per line; the last is the
ratio (pack / synced copy). `--replicate K` copies the built shards K times over (cheap: no images drawn) to
measure at a size past the page cache's dirty-page limit, where the unsynced copy must wait on the disk too.

    .venv/bin/python benchmarks/pack.py [--copies 10] [--short-side 512]
    .venv/bin/python benchmarks/pack.py --replicate 100 --repeats 2    # 5.8 GB of input: past the dirty limit
    .venv/bin/python benchmarks/pack.py --quick    # the smallest run: checks that it works, figures mean nothing
"""
import argparse
import json
import os
import runpy
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np

from annotators.base import encode
from pipeline.annotate import decode_image
from pipeline.pack import run
from pipeline.params import load_params
from pipeline.params.stages import SampleParams
from shardio.layout import shard_name
from shardio.shards import class_counts, image_fingerprint, read_shard, read_stats, shard_writer, write_stats

# The annotate benchmark's scaled-up sample (loaded by path: benchmarks/ is a folder of scripts, not a package).
scaled_image_shards = runpy.run_path(str(Path(__file__).with_name("annotate.py")))["scaled_image_shards"]
FOLDERS = ("images", "seg", "sketch", "clip")  # pack's input shards: the image shards and each annotator's


def write_annotation_shards(layout) -> None:
    """seg/sketch/clip annotation shards aligned with the image shards (provided seg skipped, as annotate does),
    with the class counts of every label map in the stats, as ingest and annotate record them."""
    rng = np.random.default_rng(0)
    for image_shard in sorted(layout.images.glob("*.tar")):
        provided, annotated = {}, {}
        with ExitStack() as stack:
            out = {name: stack.enter_context(shard_writer(layout.annotations(name) / image_shard.name))
                   for name in ("seg", "sketch", "clip")}
            for key, sample in read_shard(image_shard):
                gray = cv2.cvtColor(decode_image(sample["jpg"], 1 << 30), cv2.COLOR_RGB2GRAY)
                if "seg" in json.loads(sample["json"])["provided"]:
                    provided[key] = class_counts(cv2.imdecode(np.frombuffer(sample["seg.png"], np.uint8),
                                                              cv2.IMREAD_UNCHANGED))
                else:
                    labels = (gray // 32).astype(np.uint8)
                    out["seg"].write({"__key__": key, "seg.png": encode("seg.png", labels)})
                    annotated[key] = class_counts(labels)
                out["sketch"].write({"__key__": key, "sketch.png": encode("sketch.png", cv2.Canny(gray, 100, 200))})
                vector = rng.normal(size=512)
                unit = (vector / np.linalg.norm(vector)).astype(np.float16)
                out["clip"].write({"__key__": key, "clip.npy": encode("clip.npy", unit)})
        write_stats(image_shard, {**read_stats(image_shard), "seg_classes": provided})
        image = image_fingerprint(image_shard)  # what pack checks: the annotations were made from this shard
        for name in out:
            write_stats(layout.annotations(name) / image_shard.name,
                        {"fingerprint": name, "image_fingerprint": image, "metadata": {"model": name},
                         "seg_classes": annotated if name == "seg" else {}})


def replicate(layout, times: int) -> None:
    """Copy every input shard and its marker `times` over (copy k of shard i is shard k * shards + i) in each
    folder: the same data, at `times` its size, without drawing or encoding again."""
    for folder in FOLDERS:
        tars = sorted((layout.root / folder).glob("*.tar"))
        for k in range(1, times):
            for i, tar in enumerate(tars):
                copy = layout.root / folder / shard_name("train", k * len(tars) + i)
                shutil.copyfile(tar, copy)
                shutil.copyfile(tar.with_suffix(".stats.json"), copy.with_suffix(".stats.json"))


def main() -> None:
    """Run the benchmark and print its JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10, help="copies of each sample picture (40 pictures)")
    parser.add_argument("--short-side", type=int, default=512, help="stored short side of the images, px")
    parser.add_argument("--shard-size", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; the fastest counts")
    parser.add_argument("--replicate", type=int, default=1, help="copies of the built shards (K times the data: "
                        "100 makes 5.8 GB, past the dirty-page limit of a machine with up to ~29 GB of memory)")
    parser.add_argument("--quick", action="store_true", help="the smallest run (4 pictures at 64 px): checks that "
                        "it works")
    args = parser.parse_args()
    sample = SampleParams()
    if args.quick:
        args.copies, args.short_side, args.shard_size, args.repeats = 1, 64, 2, 1
        sample = SampleParams(landscapes=4, include_photos=False)
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml").for_dataset("sample")
    best = {"copy": float("inf"), "copy_synced": float("inf"), "pack": float("inf")}
    with tempfile.TemporaryDirectory() as tmp:
        layout = scaled_image_shards(Path(tmp), args.copies, args.short_side, args.shard_size, sample)
        write_annotation_shards(layout)
        replicate(layout, args.replicate)
        inputs = [p for folder in FOLDERS for p in sorted((layout.root / folder).glob("*.tar"))]
        megabytes = sum(p.stat().st_size for p in inputs) / 1e6
        for _ in range(args.repeats):  # the best of each: the machine is shared, its load comes and goes
            for name, synced in (("copy", False), ("copy_synced", True)):
                shutil.rmtree(Path(tmp) / name, ignore_errors=True)
                os.sync()  # each run starts with no dirty pages of the last one left to write
                start = time.perf_counter()
                byte_copy(inputs, Path(tmp) / name, synced)
                best[name] = min(best[name], time.perf_counter() - start)
            shutil.rmtree(layout.shards, ignore_errors=True)
            os.sync()
            start = time.perf_counter()
            summary = run(layout, params, params.profile("sample"), progress=False)
            best["pack"] = min(best["pack"], time.perf_counter() - start)
    for name, value, unit in [
        ("samples", summary["samples_packed"], "samples"), ("input_mb", round(megabytes, 1), "MB"),
        ("copy_mb_per_s", round(megabytes / best["copy"], 1), "MB/s"),
        ("copy_synced_mb_per_s", round(megabytes / best["copy_synced"], 1), "MB/s"),
        ("pack_mb_per_s", round(megabytes / best["pack"], 1), "MB/s"),
        ("ratio_vs_unsynced_copy", round(best["copy"] / best["pack"], 3), "x"),
        ("ratio", round(best["copy_synced"] / best["pack"], 3), "x"),
    ]:
        print(json.dumps({"name": name, "value": value, "unit": unit}))


def byte_copy(inputs: list[Path], folder: Path, synced: bool) -> None:
    """The floor: the tars of each training shard (the inputs named alike: image shard and its annotation shards)
    copied one after the other into one file under `folder` by the kernel (sendfile, as `shutil.copyfile` copies
    on Linux); `synced` then flushes each file to disk before the next, as pack syncs each training shard
    (`shardio.shards.atomic_path`)."""
    folder.mkdir(parents=True, exist_ok=True)
    shards: dict[str, list[Path]] = {}
    for path in inputs:
        shards.setdefault(path.name, []).append(path)
    for name, paths in shards.items():
        with open(folder / name, "wb") as out:
            for path in paths:
                with open(path, "rb") as source:
                    size, copied = os.fstat(source.fileno()).st_size, 0
                    while copied < size:
                        copied += os.sendfile(out.fileno(), source.fileno(), copied, size - copied)
            if synced:
                os.fsync(out.fileno())


if __name__ == "__main__":
    main()
