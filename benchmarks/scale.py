"""Scale: synthetic raw images (several sizes, JPEG and PNG, some duplicates, some bad files) through
`pipeline ingest` -> `annotate` (random-weight annotators) -> `pack`, each stage a fresh CLI subprocess on its own
data dir, at N and at 4N images. Per stage it prints images/s, peak resident memory and the ratio to the stage's
floor measured in the same run:

    ingest    bare read + decode + resize + JPEG encode of the same files, one process per core
    annotate  bare model forward of the same annotators on the same decoded images (benchmarks/annotate.py's
              best of one process with all threads and one process per core)
    pack      a plain byte copy of the same input tars, one synced file per training shard (benchmarks/pack.py's floor)

A stage's images/s is the 4N run's images over its whole wall time, start-up included (interpreter, imports, a
local Ray cluster, model construction): at small N that start-up dominates, so the ratios are lower bounds that
rise with `--images`. The marginal rate, 3N / (time at 4N - time at N), which leaves start-up out, is printed too
(`<stage>_marginal_images_per_s`), but on a shared machine the load changes between the two runs can swamp it. Peak
memory is the largest sum of resident memory over the stage's process tree (workers and Ray processes included),
sampled every 50 ms. `<stage>_memory_ratio` is its peak at 4N over its peak at N (streaming stages stay near 1);
`<stage>_bytes_per_sample` are the shards' sizes on disk per sample at 4N. Evaluation is left out: it needs a
trained model (`pipeline train`) whose cost would dwarf the rest, so its memory is not measured here. The last
line is the slowest stage's ratio.

Annotators run on random weights at small model input sizes (`--seg-long-side`, `--sketch-resolution`; CLIP at
its fixed 224 px) so the CPU-bound run finishes: the stored images stay at the dataset's size, so decoding and
pre-processing cost what they cost at scale while the forward is kept small.

    .venv/bin/python benchmarks/scale.py [--images 40] [--short-side 1024]
    .venv/bin/python benchmarks/scale.py --quick    # the smallest run, without annotate (a local Ray cluster's
                                                    # start-up alone would break the test suite's budget): checks
                                                    # that it works, figures mean nothing
"""
import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import yaml
from PIL import Image

from pipeline.params import load_params

# the other benchmarks' floors: run as a file, this script's folder is first on sys.path (and the spawned processes
# of annotate's bare forward import its functions by module name)
from annotate import bare_rates as bare_forward_rates  # benchmarks/annotate.py
from ingest import bare_rate  # benchmarks/ingest.py
from pack import byte_copy  # benchmarks/pack.py

REPO = Path(__file__).resolve().parents[1]
ANNOTATORS = ("seg", "sketch", "clip")
# (width, height, format) of the raw images, in turn: landscape photos above, at and below the stored size
SIZES = ((2048, 1365, "JPEG"), (1600, 1200, "JPEG"), (1280, 960, "PNG"), (1536, 1024, "JPEG"), (800, 600, "PNG"))


def picture(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth random RGB picture (coarse noise upscaled, plus grain) that compresses like a photo."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (max(2, height // 64), max(2, width // 64), 3), np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), np.int16)
    return np.clip(smooth + rng.integers(-4, 5, smooth.shape), 0, 255).astype(np.uint8)


def write_raw(folder: Path, count: int, scale: float) -> None:
    """`count` raw files in `folder`: mostly distinct pictures in the SIZES (times `scale`), every 10th a byte copy
    of an earlier one (a duplicate), every 25th a truncated JPEG and one text file named .jpg (bad files)."""
    folder.mkdir(parents=True)
    written: list[Path] = []
    for index in range(count):
        width, height, fmt = SIZES[index % len(SIZES)]
        suffix = ".png" if fmt == "PNG" else ".jpg"
        path = folder / f"{index:06d}{suffix}"
        if index % 10 == 9 and written:
            shutil.copyfile(written[index // 2], path.with_suffix(written[index // 2].suffix))
            continue
        if index % 25 == 24:
            path.write_bytes(b"not an image" if index == 24 else
                             _encoded(picture(int(width * scale), int(height * scale), index), "JPEG")[:2000])
            continue
        path.write_bytes(_encoded(picture(int(width * scale), int(height * scale), index), fmt))
        written.append(path)


def _encoded(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **({"quality": 92} if fmt == "JPEG" else {"compress_level": 1}))
    return buffer.getvalue()


def write_params(path: Path, annotate: list[str], short_side: int, shard_size: int, seg_long_side: int,
                 sketch_resolution: int) -> None:
    """The repo's params with a `scale` dataset profile: raw files from a folder, pseudo-labelled by `annotate`
    as the sample profile does offline (random weights, one scale, no simplification) at small model inputs."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"]["scale"] = {
        **{k: params["datasets"]["sample"][k] for k in ("test_size", "label_map", "text", "train_config")},
        "annotate": annotate,
        "source": {"kind": "folder", "path": "raw/scale"},
        "overrides": {"ingest.max_short_side": short_side, "ingest.shard_size": shard_size,
                      "annotate.seg.weights": "random", "annotate.seg.scales": [1.0],
                      "annotate.seg.long_side": seg_long_side, "annotate.clip.weights": "random",
                      "annotate.sketch.weights": "random", "annotate.sketch.pooling": "ceil",
                      "annotate.sketch.simplify": False, "annotate.sketch.resolution": sketch_resolution}}
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def run_stage(args: list[str], data_dir: Path, params: Path) -> tuple[float, float]:
    """(wall seconds, peak MB of resident memory summed over the process tree) of `pipeline <args>` as a fresh
    subprocess; raises with its stderr when it fails."""
    command = [sys.executable, "-c", "from pipeline.cli import main; main()", *args, "--dataset", "scale",
               "--params", str(params), "--data-dir", str(data_dir), "--no-progress"]
    peak = 0
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
        root = psutil.Process(process.pid)
        while process.poll() is None:
            peak = max(peak, _tree_rss(root))
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        if process.returncode:
            err.seek(0)
            raise RuntimeError(f"{' '.join(args)} failed:\n{err.read().decode()[-3000:]}")
    return seconds, peak / 1e6


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _bare_chunk(files: list[Path], limits) -> float:
    """Seconds of the bare decode + resize + encode of `files` (run in a forked worker)."""
    return len(files) / bare_rate(files, limits)


def bare_ingest_rate(files: list[Path], limits, cores: int) -> float:
    """Raw files/s (the unit of ingest's rate) of the bare decode + resize + encode of every readable one, dealt out
    over `cores` processes (bad files cost the floor nothing)."""
    readable = []
    for path in files:
        try:
            with Image.open(path) as image:
                image.load()
            readable.append(path)
        except OSError:
            pass
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(_bare_chunk, [readable[:1]] * cores, [limits] * cores))  # workers up before the clock
        start = time.perf_counter()
        list(pool.map(_bare_chunk, [readable[i::cores] for i in range(cores)], [limits] * cores))
        return len(files) / (time.perf_counter() - start)


def count_samples(folder: Path) -> int:
    """Samples in the image shards under `folder` (from their stats markers)."""
    return sum(json.loads(p.read_text()).get("count", 0) for p in folder.glob("*.stats.json"))


def main() -> None:
    """Run the benchmark and print its JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="N: raw files of the small run (the large: 4N)")
    parser.add_argument("--short-side", type=int, default=1024, help="stored short side (ingest.max_short_side)")
    parser.add_argument("--shard-size", type=int, default=10)
    parser.add_argument("--seg-long-side", type=int, default=65, help="segmentation model input long side, px")
    parser.add_argument("--sketch-resolution", type=int, default=64, help="HED input long side, px")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="workers of each stage and its floor")
    parser.add_argument("--quick", action="store_true", help="the smallest run (4 and 16 small files, no "
                        "annotator: no Ray start-up): checks that it works")
    args = parser.parse_args()
    scale, only = 1.0, list(ANNOTATORS)
    if args.quick:
        args.images, args.short_side, args.shard_size, scale, only = 4, 64, 4, 0.08, []
    stages = ["ingest", *(["annotate"] if only else []), "pack"]
    sizes = (args.images, 4 * args.images)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params_file = root / "params.yaml"
        write_params(params_file, only, args.short_side, args.shard_size, args.seg_long_side, args.sketch_resolution)
        seconds, peak, samples = {}, {}, {}
        for size in sizes:
            data = root / f"n{size}"
            write_raw(data / "raw" / "scale", size, scale)
            for stage in stages:
                extra = [] if stage == "pack" else ["--workers", str(args.cores)]
                seconds[stage, size], peak[stage, size] = run_stage([stage, *extra], data, params_file)
            samples[size] = count_samples(data / "scale" / "images")
        large = root / f"n{sizes[1]}" / "scale"
        floor = floors(load_params(params_file).for_dataset("scale"), large, only, samples[sizes[1]], args.cores)
        stored = {kind: sum(p.stat().st_size for p in (large / kind).glob("*.tar")) / samples[sizes[1]]
                  for kind in ("images", *only, "shards")}
    lines = [("images", sizes[0], "raw files (N)"), ("images_large", sizes[1], "raw files (4N)"),
             ("samples_large", samples[sizes[1]], "accepted images (4N)"), ("cores", args.cores, "processes")]
    ratios = {}
    for stage in stages:
        # ingest reads every raw file (bad ones too); annotate and pack see the accepted samples
        work = {size: size if stage == "ingest" else samples[size] for size in sizes}
        rate = work[sizes[1]] / seconds[stage, sizes[1]]
        ratios[stage] = rate / floor[stage]
        lines += [(f"{stage}_images_per_s", round(rate, 2), "images/s"),
                  (f"{stage}_floor_images_per_s", round(floor[stage], 2), "images/s")]
        extra_seconds = seconds[stage, sizes[1]] - seconds[stage, sizes[0]]
        if extra_seconds > 0:  # on a loaded machine the larger run can even be the faster one: then none
            lines += [(f"{stage}_marginal_images_per_s", round((work[sizes[1]] - work[sizes[0]]) / extra_seconds, 2),
                       "images/s")]
        lines += [(f"{stage}_peak_rss_mb", round(peak[stage, sizes[1]], 1), "MB"),
                  (f"{stage}_memory_ratio", round(peak[stage, sizes[1]] / peak[stage, sizes[0]], 3), "x"),
                  (f"{stage}_ratio", round(ratios[stage], 3), "x")]
    lines += [(f"{kind}_bytes_per_sample", round(value), "bytes") for kind, value in stored.items()]
    lines += [("ratio", round(min(ratios.values()), 3), "x")]
    for name, value, unit in lines:
        print(json.dumps({"name": name, "value": value, "unit": unit}))


def floors(params, dataset: Path, annotators: list[str], samples: int, cores: int) -> dict[str, float]:
    """Each stage's floor in its own unit (raw files/s for ingest, samples/s for the others) on the large run's
    files under `dataset` (the data dir's dataset folder)."""
    floor = {"ingest": bare_ingest_rate(sorted((dataset.parent / "raw" / "scale").iterdir()), params.ingest, cores)}
    if annotators:  # every annotator sees every sample (none is provided by a folder source)
        forward_seconds = 0.0
        for name in annotators:
            count, rates = bare_forward_rates(params, name, dataset / "images", dataset.parent / "weights", cores)
            forward_seconds += count / max(rates.values())
        floor["annotate"] = samples / forward_seconds
    inputs = [p for kind in ("images", *annotators) for p in sorted((dataset / kind).glob("*.tar"))]
    start = time.perf_counter()
    byte_copy(inputs, dataset.parent / "copy", True)
    floor["pack"] = samples / (time.perf_counter() - start)
    return floor


if __name__ == "__main__":
    main()
