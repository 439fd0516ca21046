"""Annotate throughput: the full Ray stage (local Ray, N CPU workers: read, decode, model, encode, write) against
the bare model forward of the same annotators on the same, already decoded images, set up the faster of two ways
on the same N cores: one process with N torch threads, or N processes with one thread each. The built-in sample is
ingested, resized to a short side and copied up. Weights are random (offline), which costs the same compute as real
ones. Prints one JSON object per line; the last is the ratio (stage / best bare, steady state: after the workers
have loaded their models; the rate including start-up is printed too).

    .venv/bin/python benchmarks/annotate.py [--copies 2] [--short-side 256] [--workers 2] [--only sketch,clip,seg]
    .venv/bin/python benchmarks/annotate.py --quick    # the smallest run: checks that it works, figures mean nothing
"""
import argparse
import hashlib
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import torch

from annotators.base import Item, build
from pipeline.annotate import decode_image
from pipeline.annotate_run import run
from pipeline.commands.common import StageContext
from pipeline.ingest import ingest
from shardio.layout import Layout, shard_name
from pipeline.params import Params, load_params
from pipeline.params.datasets import SourceParams
from pipeline.params.stages import IngestParams, SampleParams
from pipeline.sample import write_sample
from shardio.shards import fingerprint, read_shard, shard_writer, write_stats


REPO = Path(__file__).resolve().parents[1]


def scaled_image_shards(root: Path, copies: int, short_side: int, shard_size: int,
                        sample: SampleParams = SampleParams()) -> Layout:
    """The built-in sample ingested for real at `short_side` px, then every sample copied `copies` times under
    new keys (same bytes) into image shards of `shard_size` (so every worker stays busy) under root/data/bench."""
    write_sample(root / "raw" / "sample", sample, progress=False)
    ingested = Layout(root / "ingested", "sample")
    source = SourceParams(kind="sample", path=str(root / "raw" / "sample"))
    ingest(ingested, IngestParams(max_short_side=short_side), source, 0.2, workers=1, progress=False)
    originals = [s for shard in sorted(ingested.images.glob("*.tar")) for s in read_shard(shard)]
    samples = [(copy, key, sample) for copy in range(copies) for key, sample in originals]
    layout = Layout(root / "data", "bench")
    for index in range(0, len(samples), shard_size):
        path = layout.images / shard_name("train", index // shard_size)
        chunk = samples[index:index + shard_size]
        with shard_writer(path) as writer:
            for copy, key, sample in chunk:
                writer.write({**sample, "__key__": hashlib.sha256(f"{key}-{copy}".encode()).hexdigest()[:24]})
        write_stats(path, {"fingerprint": fingerprint("bench", index), "count": len(chunk)})
    return layout


def bench_params(seg_long_side: int) -> Params:
    """The sample profile's params, every annotator on random weights (no downloads)."""
    raw = load_params(REPO / "params.yaml").for_dataset("sample").model_dump()
    raw["annotate"]["seg"].update(weights="random", long_side=seg_long_side)
    raw["annotate"]["sketch"].update(weights="random")
    raw["annotate"]["clip"].update(weights="random")
    return Params.model_validate(raw)


def decoded_items(params: Params, name: str, images_dir: Path) -> list[Item]:
    """The images the stage annotates with `name` (those whose modality is not provided), decoded."""
    return [Item(decode_image(s["jpg"], params.ingest.max_pixels), s.get("txt", b"").decode().splitlines())
            for shard in sorted(images_dir.glob("*.tar")) for _, s in read_shard(shard)
            if name not in json.loads(s["json"])["provided"]]


def timed_forward(name: str, section, weights: Path, items: list[Item], threads: int, ready=None) -> tuple:
    """(start, end) in monotonic seconds of the annotator's forward over `items` with `threads` torch threads,
    after setup and a warm-up batch (as the stage's workers are warm after their first batch); `ready` (a
    barrier) makes several processes start together."""
    torch.set_num_threads(threads)
    annotator = build(name, section, weights)
    annotator.setup("cpu")
    annotator(items[:1])
    if ready is not None:
        ready.wait()
    start = time.monotonic()
    for i in range(0, len(items), section.batch_size):
        annotator(items[i:i + section.batch_size])
    return start, time.monotonic()


def _forward_process(name, section, weights, items, ready, results) -> None:
    results.put(timed_forward(name, section, weights, items, 1, ready))


def bare_rates(params: Params, name: str, images_dir: Path, weights: Path, cores: int) -> tuple[int, dict]:
    """(images, {setup: images/s}) of the annotator's bare forward on `cores` cores, set up as one process with
    `cores` torch threads and as `cores` processes of one thread each (the images dealt out among them)."""
    items = decoded_items(params, name, images_dir)
    section = getattr(params.annotate, name)
    start, end = timed_forward(name, section, weights, items, cores)
    rates = {"one_process": len(items) / (end - start)}
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(cores), context.Queue()
    processes = [context.Process(target=_forward_process, args=(name, section, weights, items[i::cores], ready,
                                                                 results)) for i in range(cores)]
    for process in processes:
        process.start()
    spans = [results.get() for _ in processes]
    for process in processes:
        process.join()
    rates["process_per_core"] = len(items) / (max(end for _, end in spans) - min(start for start, _ in spans))
    return len(items), rates


def main() -> None:
    """Run the benchmark and print its JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2, help="copies of each sample picture (40 pictures)")
    parser.add_argument("--short-side", type=int, default=256, help="stored short side of the images, px")
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="Ray actors per annotator, and cores of the bare run")
    parser.add_argument("--only", default="sketch,clip,seg", help="annotators, comma-separated")
    parser.add_argument("--seg-long-side", type=int, default=193, help="segmentation input long side, px")
    parser.add_argument("--quick", action="store_true",
                        help="the smallest run (4 pictures at 64 px, CLIP only): checks that it works")
    args = parser.parse_args()
    sample = SampleParams()
    if args.quick:
        args.copies, args.short_side, args.shard_size, args.only = 1, 64, 2, "clip"
        sample = SampleParams(landscapes=4, include_photos=False)
    names = args.only.split(",")
    params = bench_params(args.seg_long_side)
    lines = [("workers", args.workers, "actors")]
    with tempfile.TemporaryDirectory() as tmp:
        layout = scaled_image_shards(Path(tmp), args.copies, args.short_side, args.shard_size, sample)
        bare = {name: bare_rates(params, name, layout.images, layout.weights, args.workers) for name in names}
        stage = StageContext(params, layout.dataset, params.profile("sample"), layout)
        summaries = run(stage, names, workers=args.workers, progress=False)
    stage_total = bare_total = startup_total = 0.0
    for summary in summaries:
        images, rates = bare[summary.name]
        assert images == summary.annotated, (images, summary.annotated)
        steady = summary.seconds - summary.startup_seconds
        lines += [(f"{summary.name}_images", images, "images")]
        lines += [(f"{summary.name}_bare_forward_{setup}_images_per_s", round(rate, 2), "images/s")
                  for setup, rate in rates.items()]
        lines += [(f"{summary.name}_stage_images_per_s", round(images / steady, 2), "images/s"),
                  (f"{summary.name}_stage_with_startup_images_per_s", round(images / summary.seconds, 2), "images/s")]
        stage_total += steady
        startup_total += summary.startup_seconds
        bare_total += images / max(rates.values())
    lines += [("bare_forward_seconds", round(bare_total, 2), "s"), ("stage_seconds", round(stage_total, 2), "s"),
              ("stage_startup_seconds", round(startup_total, 2), "s"),
              ("ratio_with_startup", round(bare_total / (stage_total + startup_total), 3), "x"),
              ("ratio", round(bare_total / stage_total, 3), "x")]
    for name, value, unit in lines:
        print(json.dumps({"name": name, "value": value, "unit": unit}))


if __name__ == "__main__":
    main()
