"""Ingest throughput: the built-in sample scaled up (copies of its pictures with one pixel changed, so every copy
has its own bytes and key), through `ingest` on all cores, against the bare decode + resize + JPEG encode of the
same files in one process. Prints one JSON object per line; the last is the ratio (ingest / bare).

    .venv/bin/python benchmarks/ingest.py [--copies 5] [--workers N]
    .venv/bin/python benchmarks/ingest.py --quick    # the smallest run: checks that it works, figures mean nothing
"""
import argparse
import io
import json
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

from pipeline.imageio import stored_size
from pipeline.executor import available_cores
from pipeline.ingest import ingest
from shardio.layout import Layout
from pipeline.params.datasets import SourceParams
from pipeline.params.stages import IngestParams, SampleParams
from pipeline.sample import write_sample


def scaled_sample(root: Path, copies: int, sample: SampleParams = SampleParams()) -> list[Path]:
    """The sample's pictures, `copies` times each, every copy one pixel different (new bytes, new key)."""
    write_sample(root / "sample", sample, progress=False)
    files = []
    for source in sorted((root / "sample" / "images").iterdir()):
        image = Image.open(source)
        fmt, rgb = image.format, image.convert("RGB")
        for copy in range(copies):
            rgb.putpixel((0, 0), (copy, copy, copy))
            target = root / "scaled" / f"{copy:03d}-{source.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            rgb.save(target, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
            files.append(target)
    return files


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the ingest workers, once their pool is closed)."""
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def bare_rate(files: list[Path], limits: IngestParams) -> float:
    """Images/s of read + decode + resize to the stored size + JPEG encode, one process, nothing else."""
    start = time.perf_counter()
    for path in files:
        image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
        size = stored_size(*image.size, limits.max_short_side)
        if size != image.size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        image.save(io.BytesIO(), "JPEG", quality=limits.jpeg_quality)
    return len(files) / (time.perf_counter() - start)


def spin(n: int) -> int:
    """Pure CPU work: a Python loop."""
    return sum(i * i for i in range(n))


def machine_speedup(workers: int, tasks: int = 8, n: int = 2_000_000) -> float:
    """How much faster `workers` processes run pure CPU work than one: the best ingest can do on this machine now
    (other jobs on a shared machine keep it well below `workers`)."""
    start = time.perf_counter()
    for _ in range(tasks):
        spin(n)
    serial = time.perf_counter() - start
    with ProcessPoolExecutor(workers) as pool:
        start = time.perf_counter()
        list(pool.map(spin, [n] * tasks))
    return serial / (time.perf_counter() - start)


def main() -> None:
    """Run the benchmark and print its JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=5, help="copies of each sample picture")
    parser.add_argument("--workers", type=int, default=available_cores(), help="ingest processes")
    parser.add_argument("--quick", action="store_true", help="the smallest run (4 pictures): checks that it works")
    args = parser.parse_args()
    limits = IngestParams(shard_size=20)  # many small shards: every worker stays busy to the end
    sample, spin_size = SampleParams(), 2_000_000
    if args.quick:
        args.copies, sample, spin_size = 1, SampleParams(landscapes=4, include_photos=False), 10_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = scaled_sample(root, args.copies, sample)
        cpu = cpu_seconds()
        bare = bare_rate(files, limits)
        cpu, bare_cpu = cpu_seconds(), cpu_seconds() - cpu
        summary = ingest(Layout(root / "data", "bench"), limits, SourceParams(kind="folder", path=str(root / "scaled")),
                         0.1, workers=args.workers, progress=False)
        ingest_cpu = cpu_seconds() - cpu
    speedup = machine_speedup(args.workers, n=spin_size)
    rate = summary.listed / summary.seconds
    for name, value, unit in [
        ("images", len(files), "images"), ("workers", args.workers, "processes"),
        ("machine_parallel_speedup", round(speedup, 2), "x"),
        # CPU per image does not depend on what else the machine runs: it shows ingest's own overhead
        ("bare_cpu_ms_per_image", round(1000 * bare_cpu / len(files), 2), "ms"),
        ("ingest_cpu_ms_per_image", round(1000 * ingest_cpu / len(files), 2), "ms"),
        ("bare_decode_encode_images_per_s", round(bare, 2), "images/s"),
        ("ingest_images_per_s", round(rate, 2), "images/s"), ("ratio", round(rate / bare, 3), "x"),
    ]:
        print(json.dumps({"name": name, "value": value, "unit": unit}))


if __name__ == "__main__":
    main()
