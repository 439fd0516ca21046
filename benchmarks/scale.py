"""Scale: synthetic raw images (several sizes, JPEG and PNG, some duplicates, some bad files) through
`pipeline ingest` -> `annotate` (random-weight annotators) -> `pack` -> `evaluate`, each stage a fresh CLI
subprocess on its own data dir, at N and at 4N images. Per stage it prints images/s, peak resident memory and the
ratio to the stage's floor measured in the same run:

    ingest    bare read + decode + resize + JPEG encode of the same files, one process per core
    annotate  bare model forward of the same annotators on the same decoded images (benchmarks/annotate.py's
              best of one process with all threads and one process per core)
    pack      a plain byte copy of the same input tars, one synced file per training shard (benchmarks/pack.py's floor);
              pack and its floor are timed on the 4N run's shards copied `--pack-replicate` times over (at the N
              this runs at on a CPU, pack's work on the 4N shards alone is a few ms beside its start-up)
    evaluate  bare Inception feature extraction (torch-fidelity's extractor, evaluate's weights file, its batch
              size) of as many images as evaluate must extract: per test image one generated image per condition
              plus the reference image. The gap is what evaluate does beside features: reading and decoding the
              test shards, the generator's forward under each condition, the FID/KID statistics (per condition
              two eigendecompositions of 2048 x 2048 covariances, seconds each whatever the number of images),
              the report, and its start-up (torch, the generator snapshot, the extractor)

Evaluation needs a trained model: the `--model` family (default: the project's own method) is trained for two
steps in the profile's configuration on the N run's shards (not timed; its snapshot is copied to the 4N run) and
evaluated with FID and KID only, under evaluate's conditions, on all of each run's test split (about test_size of
the accepted images). The other metrics run annotators (their cost is annotate's) or LPIPS, which the features
floor does not cover.

A stage's images/s is the 4N run's images over the time its work took: its wall time less its fixed cost, measured
in the same minute by running the stage again at once on the finished data dir, where every shard is done and the
rerun does nothing but start (interpreter, imports, params, the listing and the done-markers). What the rerun
skips stays in the work: annotate's local Ray cluster and model loading, which a paper-scale run pays once per
worker. `<stage>_wall_images_per_s` is the rate with the fixed cost, `<stage>_fixed_s` the fixed cost. Where the
work is under a tenth of the wall time (a tiny N on a loaded machine, where the subtraction is noise), and for
evaluate, whose rerun recomputes, the rate keeps the fixed cost: a lower bound that rises with `--images`. Peak
memory is the largest sum of resident memory over the stage's process tree (workers and Ray processes included),
sampled every 50 ms. `<stage>_memory_ratio` is its peak at 4N over its peak at N (streaming stages stay near 1);
`<stage>_bytes_per_sample` are the shards' sizes on disk per sample at 4N. The last line is the slowest stage's
ratio.

Annotators run on random weights at small model input sizes (`--seg-long-side`, `--sketch-resolution`; CLIP at
its fixed 224 px) so the CPU-bound run finishes: the stored images stay at the dataset's size, so decoding and
pre-processing cost what they cost at scale while the forward is kept small.

    .venv/bin/python benchmarks/scale.py [--images 40] [--short-side 1024] [--model M]
    .venv/bin/python benchmarks/scale.py --quick    # the smallest run, without annotate and evaluate (a local
                                                    # Ray cluster's start-up alone would break the test suite's
                                                    # budget, and evaluation needs the annotations): checks that
                                                    # it works, figures mean nothing
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
from shardio.layout import Layout
from shardio.modalities import ANNOTATORS
from train.families import REGISTRY, declaration, default_model
from train.models import family

# the other benchmarks' floors: run as a file, this script's folder is first on sys.path (and the spawned processes
# of annotate's bare forward import its functions by module name)
from annotate import bare_rates as bare_forward_rates  # benchmarks/annotate.py
from evaluation import bare_feature_seconds  # benchmarks/evaluation.py
from ingest import bare_rate  # benchmarks/ingest.py
from pack import byte_copy, replicate  # benchmarks/pack.py

REPO = Path(__file__).resolve().parents[1]
TRAIN_STEPS = 2  # the evaluated model only has to exist: its quality does not change evaluation's cost
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
                 sketch_resolution: int, model: str) -> None:
    """The repo's params with a `scale` dataset profile: raw files from a folder, pseudo-labelled by `annotate`
    as the sample profile does offline (random weights, one scale, no simplification) at small model inputs; a
    two-step training of `model` (a VGG-19 its loss takes: random) and an FID/KID evaluation (random Inception)."""
    write_profile(path, "scale", model, {
        **{k: repo_params()["datasets"]["sample"][k] for k in ("test_size", "label_map", "text", "train_config")},
        "annotate": annotate,
        "source": {"kind": "folder", "path": "raw/scale"},
        "overrides": {"ingest.max_short_side": short_side, "ingest.shard_size": shard_size,
                      "annotate.seg.weights": "random", "annotate.seg.scales": [1.0],
                      "annotate.seg.long_side": seg_long_side, "annotate.clip.weights": "random",
                      "annotate.sketch.weights": "random", "annotate.sketch.pooling": "ceil",
                      "annotate.sketch.simplify": False, "annotate.sketch.resolution": sketch_resolution,
                      "evaluate.inception_weights": "random"}})


def repo_params() -> dict:
    """The repo's params.yaml as plain data."""
    return yaml.safe_load((REPO / "params.yaml").read_text())


def write_profile(path: Path, name: str, model: str, profile: dict) -> None:
    """The repo's params with the dataset profile `name` added, a two-step training of `model` (it only has to
    exist; a VGG-19 its loss takes: random) and an evaluation by FID and KID only, written to `path`."""
    params = repo_params()
    params["train"][model].update(steps=TRAIN_STEPS, batch_size=2, workers=0, snapshot_every=TRAIN_STEPS,
                                  sample_every=TRAIN_STEPS, tensorboard=False)
    if "vgg_weights" in declaration(model).params.model_fields:
        profile["overrides"][f"train.{model}.vgg_weights"] = "random"
    params["evaluate"].update(metrics=["fid", "kid"])
    params["datasets"][name] = profile
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def run_stage(args: list[str], data_dir: Path, params: Path, dataset: str = "scale") -> tuple[float, float]:
    """(wall seconds, peak MB of resident memory summed over the process tree) of `pipeline <args>` on `dataset`
    as a fresh subprocess; raises with its stderr when it fails."""
    command = [sys.executable, "-c", "from pipeline.cli import main; main()", *args, "--dataset", dataset,
               "--params", str(params), "--data-dir", str(data_dir)]
    peak = 0
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
        root = psutil.Process(process.pid)
        while process.poll() is None:
            peak = max(peak, tree_rss(root))
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        if process.returncode:
            err.seek(0)
            raise RuntimeError(f"{' '.join(args)} failed:\n{err.read().decode()[-3000:]}")
    return seconds, peak / 1e6


def tree_rss(root: psutil.Process) -> int:
    """Bytes of resident memory summed over `root` and its descendants now (0 once `root` is gone)."""
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


def count_samples(folder: Path, shards: str) -> int:
    """Samples in the image shards under `folder` whose names match `shards` (from their stats markers)."""
    return sum(json.loads(p.read_text()).get("count", 0) for p in folder.glob(f"{shards}.stats.json"))


def main() -> None:
    """Run the benchmark and print its JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="N: raw files of the small run (the large: 4N)")
    parser.add_argument("--short-side", type=int, default=1024, help="stored short side (ingest.max_short_side)")
    parser.add_argument("--shard-size", type=int, default=10)
    parser.add_argument("--seg-long-side", type=int, default=65, help="segmentation model input long side, px")
    parser.add_argument("--sketch-resolution", type=int, default=64, help="HED input long side, px")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="workers of each stage and its floor")
    parser.add_argument("--pack-replicate", type=int, default=20, help="pack is timed on the 4N run's shards "
                        "copied this many times over (its work on the 4N shards alone is lost in its start-up)")
    parser.add_argument("--model", choices=list(REGISTRY), default=default_model(),
                        help="the family trained and evaluated [default: %(default)s, the project's own method]")
    parser.add_argument("--quick", action="store_true", help="the smallest run (4 and 16 small files, no "
                        "annotator: no Ray start-up): checks that it works")
    args = parser.parse_args()
    scale, only = 1.0, list(ANNOTATORS)
    if args.quick:
        args.images, args.short_side, args.shard_size, scale, only = 4, 64, 4, 0.08, []
    stages = ["ingest", *(["annotate", "pack", "evaluate"] if only else ["pack"])]
    sizes = (args.images, 4 * args.images)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params_file = root / "params.yaml"
        write_params(params_file, only, args.short_side, args.shard_size, args.seg_long_side, args.sketch_resolution,
                     args.model)
        seconds, peak, work, fixed = {}, {}, {}, {}
        for size in sizes:
            data = root / f"n{size}"
            write_raw(data / "raw" / "scale", size, scale)
            for stage in stages:
                if stage == "evaluate":
                    trained_model(root / f"n{sizes[0]}", data, params_file, args.model)
                seconds[stage, size], peak[stage, size] = run_stage(STAGE_ARGS[stage](args), data, params_file)
                if stage in RERUN_DOES_NOTHING:
                    fixed[stage, size] = run_stage(STAGE_ARGS[stage](args), data, params_file)[0]
            images = data / "scale" / "images"
            # ingest reads every raw file (bad ones too); annotate and pack see the accepted samples, evaluate the
            # test split's
            work["ingest", size] = size
            work["annotate", size] = work["pack", size] = count_samples(images, "*")
            work["evaluate", size] = count_samples(images, "test-*")
        large = root / f"n{sizes[1]}"
        timing = {stage: (seconds[stage, sizes[1]], fixed.get((stage, sizes[1]), 0.0), work[stage, sizes[1]])
                  for stage in stages}
        replicated = replicated_data(large, root / "pack", only, args.pack_replicate)
        pack_wall = run_stage(STAGE_ARGS["pack"](args), replicated, params_file)[0]
        timing["pack"] = (pack_wall, run_stage(STAGE_ARGS["pack"](args), replicated, params_file)[0],
                          count_samples(replicated / "scale" / "images", "*"))
        floor = floors(load_params(params_file), large, replicated, only,
                       {stage: count for stage, (_, _, count) in timing.items()}, args.cores, args.model)
        stored = {kind: sum(p.stat().st_size for p in (large / "scale" / kind).glob("*.tar")) / work["pack", sizes[1]]
                  for kind in ("images", *only, "shards")}
    lines = [("images", sizes[0], "raw files (N)"), ("images_large", sizes[1], "raw files (4N)"),
             ("samples_large", work["pack", sizes[1]], "accepted images (4N)"), ("cores", args.cores, "processes")]
    if "evaluate" in stages:
        lines += [("test_images_large", work["evaluate", sizes[1]], "test images evaluated (4N)")]
    ratios = {}
    lines += [("pack_samples_timed", timing["pack"][2], f"samples (the 4N run's x {args.pack_replicate})")]
    for stage in stages:
        wall, fixed_seconds, count = timing[stage]
        work_seconds = wall - fixed_seconds if wall - fixed_seconds > wall / 10 else wall
        rate = count / work_seconds
        ratios[stage] = rate / floor[stage]
        lines += [(f"{stage}_images_per_s", round(rate, 2), "images/s"),
                  (f"{stage}_floor_images_per_s", round(floor[stage], 2), "images/s"),
                  (f"{stage}_wall_images_per_s", round(count / wall, 2), "images/s"),
                  (f"{stage}_fixed_s", round(fixed_seconds, 2), "s")]
        lines += [(f"{stage}_peak_rss_mb", round(peak[stage, sizes[1]], 1), "MB"),
                  (f"{stage}_memory_ratio", round(peak[stage, sizes[1]] / peak[stage, sizes[0]], 3), "x"),
                  (f"{stage}_ratio", round(ratios[stage], 3), "x")]
    lines += [(f"{kind}_bytes_per_sample", round(value), "bytes") for kind, value in stored.items()]
    lines += [("ratio", round(min(ratios.values()), 3), "x")]
    for name, value, unit in lines:
        print(json.dumps({"name": name, "value": value, "unit": unit}))


# the stages whose rerun on a finished data dir does nothing (their fixed cost); evaluate's recomputes, and pack's is
# taken on the replicated shards it is timed on
RERUN_DOES_NOTHING = ("ingest", "annotate")
# each stage's command line from the benchmark's arguments (the common options are run_stage's)
STAGE_ARGS = {"ingest": lambda args: ["ingest", "--workers", str(args.cores), "--no-progress"],
              "annotate": lambda args: ["annotate", "--workers", str(args.cores), "--no-progress"],
              "pack": lambda args: ["pack", "--no-progress"],
              "evaluate": lambda args: ["evaluate", "--model", args.model]}


def trained_model(first: Path, data: Path, params: Path, model: str) -> None:
    """A trained run of `model` in `data`: trained (untimed) on the shards of the first run's data dir `first`, and
    copied from there into the others'."""
    run = Path("runs") / "scale" / model / "train"
    if not (first / run).is_dir():
        run_stage(["train", "--model", model], first, params)
    if data != first:
        shutil.copytree(first / run, data / run)


def replicated_data(large: Path, data: Path, annotators: list[str], times: int) -> Path:
    """A data dir `data` holding the image and annotation shards of the large run's data dir `large`, `times` over
    (benchmarks/pack.py's `replicate`): pack's input at a size where its work outweighs its start-up."""
    for kind in ("images", *annotators):
        shutil.copytree(large / "scale" / kind, data / "scale" / kind)
    replicate(Layout(data, "scale"), times)
    return data


def floors(all_params, data: Path, replicated: Path, annotators: list[str], work: dict[str, int],
           cores: int, model: str) -> dict[str, float]:
    """Each stage's floor in its own unit (raw files/s for ingest, samples/s for annotate and pack, test samples/s
    for evaluate of `model`) on the large run's files in its data dir `data` (pack's: on the `replicated` one);
    `work` is each stage's count of them."""
    params, dataset = all_params.for_dataset("scale"), data / "scale"
    floor = {"ingest": bare_ingest_rate(sorted((data / "raw" / "scale").iterdir()), params.ingest, cores)}
    if annotators:  # every annotator sees every sample (none is provided by a folder source)
        floor["annotate"] = annotate_floor(params, annotators, dataset / "images", data / "weights", cores)
    inputs = [p for kind in ("images", *annotators) for p in sorted((replicated / "scale" / kind).glob("*.tar"))]
    floor["pack"] = work["pack"] / copy_seconds(inputs, replicated / "copy")
    if "evaluate" in work:
        floor["evaluate"] = evaluate_floor(all_params, "scale", data, work["evaluate"], model)
    return floor


def annotate_floor(params, annotators: list[str], images: Path, weights: Path, cores: int) -> float:
    """Samples/s of the bare forward of every one of `annotators` on the image shards in `images` (each
    annotator's best of one process with all threads and one process per core), one after the other."""
    forward_seconds = 0.0
    for name in annotators:
        count, rates = bare_forward_rates(params, name, images, weights, cores)
        forward_seconds += count / max(rates.values())
    return count / forward_seconds


def copy_seconds(inputs: list[Path], copy: Path) -> float:
    """Seconds of pack's floor: a byte copy of the input tars `inputs` into `copy`, synced per training shard."""
    start = time.perf_counter()
    byte_copy(inputs, copy, True)
    return time.perf_counter() - start


def evaluate_floor(all_params, dataset: str, data: Path, test_images: int, model: str) -> float:
    """Test samples/s of the bare Inception features evaluate of `model` extracts for `test_images` of `dataset`
    in the data dir `data`: per test image one generated image per condition plus the reference image."""
    params = all_params.for_dataset(dataset)
    extractions = test_images * (len(params.evaluate.conditions) + 1)
    resolution = family(model).config(all_params.profile(dataset).train_config).resolution
    weights = data / "cache" / "fid" / "random-inception.pth"  # the file evaluate used
    return test_images / bare_feature_seconds(weights, resolution, params.evaluate.batch_size, extractions)[0]


if __name__ == "__main__":
    main()
