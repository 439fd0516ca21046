"""The evaluation of one trained model (`pipeline evaluate`): G_ema of the run's newest snapshot generates the test
split under each condition of `evaluate.conditions` (only that condition's modalities given, several noise draws
for LPIPS diversity), one row per condition or per row the family names (`ModelFamily.rows`); the metrics score
each row and `write_report` writes metrics.json, report.md, plots.

The test split streams through in batches: each batch is generated under every row, what the metrics keep of it
is collected and the images are dropped (only the first SAMPLES_SHOWN are kept for the report); the Inception
features of the generated and the reference images go to files under the eval folder as they come
(`metrics.feature_files`), so memory stays flat in the number of images. Under `torchrun` each process takes
every world-th batch; the metrics' parts (for the features: where they are on disk, so the processes must share
the data dir's filesystem) are gathered to rank 0, which finishes them and writes the report, with the same
numbers as one process."""
import dataclasses
import functools
import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from annotators.weights import RANDOM, resolve
from shardio.modalities import MODEL_MODALITIES

from . import checkpoint, distributed, protocol
from .data import Preprocess, to_device
from .eval_data import EvaluationError, EvalBatch, EvalSet, pixel_digests, to_uint8
from .eval_plan import ANNOTATOR_OF, check_segmenter, device_batch, plan, trained
from .metrics import REGISTRY, MetricStream
from .metrics.base import EvalContext, Reference, annotator_fn
from .metrics.feature_files import Appender
from .metrics.fid import image_features
from .conditions import CONDITIONS, generator_modalities
from .metrics.conditions import inputs_for
from .models import EvalRow, family
from .noise import private_noise
from .report import write_metrics_json, write_report

log = logging.getLogger(__name__)

SAMPLES_SHOWN = 32


def latest_snapshot(layout, model: str) -> Path:
    """The newest weight snapshot of the model's run, or EvaluationError saying to train first."""
    folder = layout.training(model)
    snapshot = checkpoint.newest_snapshot(folder)
    if snapshot is None:
        raise EvaluationError(f"no network-snapshot-*.pt in {folder}: run "
                              f"`pipeline train --dataset {layout.dataset} --model {model}` first")
    return snapshot


def load_generator(model: str, cfg, num_classes: int, snapshot: Path, device) -> torch.nn.Module:
    """The snapshot's G_ema (loaded strictly, weights only), in eval mode on `device`; weights of another shape
    than `cfg`'s are an EvaluationError naming the snapshot."""
    G = family(model).generator(cfg, num_classes)
    try:
        G.load_state_dict(checkpoint.load(snapshot)["G_ema"])
    except RuntimeError as err:
        raise EvaluationError(f"{snapshot} does not fit {model}'s generator as configured "
                              f"({str(err).splitlines()[0]} ...): build it in the configuration it was "
                              f"trained with (set train.{model}.config to it)") from None
    return G.eval().requires_grad_(False).to(device)


def reference_set(dataset: str, test: EvalSet, digests: list[bytes], resolution: int) -> Reference:
    """The images of `test` (the test split, or the training split under evaluate.reference_split: train) as the
    FID/KID reference set, named by a hash of their pixels (`digests`: each image's, in the split's order):
    whatever changes them (re-ingest with another jpeg_quality or max_short_side, repacking, preprocessing, seed)
    gets its own cached features, and the same pixels find theirs again (the extractor's
    weights are in the cache key too). Its images are read again only when the cache has no features for them."""
    name = hashlib.sha256(b"".join(digests)).hexdigest()[:16]
    whole = test.whole()
    return Reference(f"{dataset}-{name}", test.split, len(digests), resolution,
                     lambda: (batch.images for batch in whole))


def condition_masks(condition: str, batch: int, device) -> dict:
    """Generator modality masks giving every sample exactly the modalities of `condition`."""
    given = generator_modalities(condition)
    return {m: torch.full((batch,), m in given, dtype=torch.bool, device=device) for m in MODEL_MODALITIES}


def batch_seed(seed: int, index: int) -> int:
    """The noise seed of batch number `index` of a generation seeded `seed`: each batch has its own stream, so its
    images do not depend on the batches generated before it (or on which process generates it)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])


@torch.no_grad()
def generate(G, cond: dict, condition: str, seed: int, batch_size: int, device, first: int = 0) -> np.ndarray:
    """uint8 [N, H, W, 3] images of G under `condition` from `cond` (the networks' layout, on `device`: a host
    tensor would be copied again by every call), in batches of `batch_size` numbered from `first`, each batch's
    noise drawn from `batch_seed(seed, number)` (the same on every device; no global RNG, CPU or CUDA, is
    touched)."""
    out = []
    for number, start in enumerate(range(0, len(cond["image"]), batch_size), first):
        batch = {k: v[start:start + batch_size].to(device) for k, v in cond.items()}
        batch["style"] = batch["image"]  # masked out under every condition: the test image never leaks
        with private_noise(batch_seed(seed, number)):
            image, _ = G(batch, condition_masks(condition, len(batch["image"]), device))
        out.append(to_uint8(image))
    return np.concatenate(out)


def diversity_groups(G, batch: EvalBatch, cond: dict, condition: str, generated: np.ndarray, limit: int, draws: int,
                     seed: int, device) -> np.ndarray | None:
    """uint8 [draws, R, H, W, 3]: the batch's samples among the split's first `limit` (R of them) as `generated`
    has them, then generated again from `cond` (the batch on the device) with the seeds seed + 1 ...
    seed + draws - 1 (INADE's groups of new noise); None where the batch has none of them or there is one draw."""
    rows = int((batch.positions < limit).sum())
    if draws < 2 or rows == 0:
        return None
    subset = {k: v[:rows] for k, v in cond.items()}
    return np.stack([generated[:rows]] + [generate(G, subset, condition, seed + g, rows, device, first=batch.index)
                                          for g in range(1, draws)])


def generate_rows(rows: list[EvalRow], batch: EvalBatch, num_classes: int, p, device):
    """(row, its images of the test batch, its diversity groups or None) for each row in turn: the batch goes to
    the device once, its segmentation as class ids made one-hot there (evaluate params `p`)."""
    cond = to_device(batch.cond, device, num_classes)
    draws = p.diversity_groups if "lpips_diversity" in p.metrics else 1
    for row in rows:
        generated = generate(row.generate, cond, row.condition, p.seed, len(batch), device, first=batch.index)
        yield row, generated, diversity_groups(row.generate, batch, cond, row.condition, generated,
                                               p.diversity_images, draws, p.seed, device)


def random_weights_file(kind: str, cache_dir: Path) -> Path:
    """A seeded, randomly initialised state dict in the library's layout (torch-fidelity's InceptionV3, or
    torchvision's AlexNet for LPIPS), for `evaluate.*_weights: random`; the scores it gives are not meaningful."""
    import torchvision

    from shardio.shards import atomic_path

    path = Path(cache_dir) / f"random-{kind}.pth"
    if not path.is_file():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            noise = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
            state = (random_inception_state(noise) if kind == "inception"
                     else torchvision.models.alexnet(weights=None).state_dict())
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    return path


def random_inception_state(calibration: torch.Tensor) -> dict:
    """torch-fidelity's InceptionV3 state dict with random weights (torchvision's Inception3 initialisation, from
    the global torch RNG) and batch-norm statistics measured on `calibration` (uint8 [N, 3, H, W], N >= 2), so that
    its features are well scaled (with untouched statistics they reach ~1e10)."""
    import io

    import torchvision
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    # 1008 classes and no aux head: the key names and shapes torch-fidelity loads strictly
    init = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=True)
    buf = io.BytesIO()
    torch.save(init.state_dict(), buf)
    buf.seek(0)
    extractor = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=buf)
    for module in extractor.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative statistics of the calibration batch
            module.train()
    with torch.no_grad():
        extractor(calibration)
    return extractor.state_dict()


def random_networks(metrics, params, annotate_params) -> dict[str, list[str]]:
    """{score key: the networks behind it whose weights are random} for the scores of `metrics`, from the evaluate
    params (Inception, AlexNet) and the annotate params (the annotators that score the generated images)."""
    networks = {"fid": [("inception", params.inception_weights)], "kid": [("inception", params.inception_weights)],
                "lpips_diversity": [("alexnet", params.lpips_weights)], "lpips_gt": [("alexnet", params.lpips_weights)]}
    for name, (annotator, _, _) in ANNOTATOR_OF.items():
        section = getattr(annotate_params, annotator)
        networks[name] = [(f"{annotator} annotator", section.weights)]
        if getattr(section, "simplify", False):
            networks[name].append(("sketch simplifier", section.simplify_weights))
    flags = {}
    for name in metrics:
        random_ones = [network for network, weights in networks.get(name, []) if weights == RANDOM]
        flags.update({key: random_ones for key in REGISTRY[name].keys if random_ones})
    return flags


def metric_weights(params, weights_dir: Path, cache_dir: Path):
    """The evaluate params with 'random' Inception / AlexNet weights replaced by random files (with a warning);
    weights the metrics need but the registry cannot give stop here, before any generation, with its message."""
    update = {}
    for field, kind, metrics in (("inception_weights", "inception", {"fid", "kid"}),
                                 ("lpips_weights", "alexnet", {"lpips_diversity", "lpips_gt"})):
        if getattr(params, field) == RANDOM:
            log.warning("evaluate.%s is 'random': the %s network is untrained, its scores are not meaningful",
                        field, kind)
            update[field] = str(random_weights_file(kind, cache_dir))
        elif metrics & set(params.metrics):
            resolve(getattr(params, field), weights_dir)
    return params.model_copy(update=update)


def annotator_functions(metrics, annotate_params, weights_dir: Path, device: str) -> dict:
    """The EvalContext annotator functions the metrics need, each annotator built from its params and set up."""
    from annotators.base import build

    functions = {}
    for name in metrics:
        if name in ANNOTATOR_OF:
            annotator_name, ext, field = ANNOTATOR_OF[name]
            section = getattr(annotate_params, annotator_name)
            annotator = build(annotator_name, section, weights_dir)
            annotator.setup(device)
            functions[field] = annotator_fn(annotator, ext, section.batch_size)
    return functions


def _in_order(parts: list[dict[int, np.ndarray]]) -> np.ndarray:
    """The arrays of every process's {batch index: array}, concatenated in batch order."""
    merged = {index: array for part in parts for index, array in part.items()}
    return np.concatenate([merged[index] for index in sorted(merged)])


def _name_reference(reference: Reference, dataset: str, test: EvalSet, gathered: list) -> int:
    """Name `reference` after the pixels of the images of `test` (the reference split) every process saw (its
    cache key) and give it their features (in batch order, as the processes spilled them) when the processes
    computed them; returns their number, or EvaluationError when no sample was usable."""
    merged = {index: d for digests, *_ in gathered for index, d in digests.items()}
    if not merged:
        raise EvaluationError(f"no usable {test.split} samples in {test.shards_dir}")
    named = reference_set(dataset, test, [d for index in sorted(merged) for d in merged[index]], reference.resolution)
    # the metric streams hold `reference` since the first batch; it gets its name now that every pixel is seen
    reference.dataset, reference.limit, reference.batches = named.dataset, named.limit, named.batches
    features = {index: rows for _, _, real, *_ in gathered for index, rows in real.items()}
    reference.features = [features[index] for index in sorted(features)] if features else None
    return named.limit


def evaluate_run(stage, model: str, num_images: int | None = None,
                 processes: distributed.Processes | None = None) -> dict[str, Path]:
    """Evaluate the newest snapshot of `model` on the dataset's test split; returns write_report's paths (on rank
    0; the other processes of a `torchrun` return {})."""
    from annotators.labelmaps import load_label_map

    params, layout = stage.params, stage.layout
    p = params.evaluate
    processes = processes or distributed.Processes(0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    check_segmenter(p.metrics, params.annotate.seg, stage.dataset, stage.profile.label_map)  # params before the run
    snapshot = latest_snapshot(layout, model)
    run = trained(stage, model, snapshot)
    evaluation = plan(stage, model, num_images, run.cfg)
    evaluation.notes[:0] = run.notes  # the protocol record carries how the network was built too
    cfg, notes, fam = evaluation.cfg, evaluation.notes, family(model)
    labels = load_label_map(stage.profile.label_map)
    device = str(processes.device)
    cache_dir = layout.data_dir / "cache" / "fid"
    random_weights = random_networks(p.metrics, p, params.annotate)
    metric_params = metric_weights(p, layout.weights, cache_dir)
    batch_size, note = device_batch(p, fam, cfg, labels.num_classes, processes.device)
    notes += [note] if note else []
    test = EvalSet(layout.shards, cfg.resolution, labels.num_classes, evaluation.limit, p.seed, batch_size,
                   Preprocess(run.fit).for_test(), processes.rank, processes.world)
    # FID/KID's real images: the test images themselves, or up to evaluate.num_images training images read the
    # same way (INADE compares with the whole training set's statistics)
    real_set = test if p.reference_split == "test" else dataclasses.replace(test, split="train", limit=p.num_images)
    # FID's and KID's features are spilled here as they come (8 KB an image), each process into its own folder,
    # which a run killed before its end leaves behind for the next to clear
    spilled = layout.evaluation(model) / "features"
    shutil.rmtree(spilled / f"process-{processes.rank}", ignore_errors=True)
    ctx = EvalContext(metric_params, weights_dir=layout.weights, cache_dir=cache_dir, device=device,
                      gather=functools.partial(distributed.gather_to_rank0, processes=processes),
                      scratch_dir=spilled / f"process-{processes.rank}",
                      **annotator_functions(p.metrics, params.annotate, layout.weights, device))
    reference = Reference(stage.dataset, real_set.split, 0, cfg.resolution, lambda: ())  # named once pixels are seen
    G = load_generator(model, cfg, labels.num_classes, snapshot, device)
    rows = [row for row in (fam.rows(G) if fam.rows else [EvalRow(c, c, G) for c in CONDITIONS])
            if row.condition in evaluation.conditions]
    streams = {row.name: MetricStream(p.metrics, ctx, reference) for row in rows}
    digests, shown, real, tested = {}, {row.name: {} for row in rows}, {}, {}
    # every process embeds its own reference images for FID/KID: no process embeds them all while others wait
    real_file = Appender(ctx.scratch()) if {"fid", "kid"} & set(p.metrics) else None

    def keep_reference(batch):
        digests[batch.index] = pixel_digests(batch.images)
        if real_file:
            real[batch.index] = real_file.append(image_features(batch.images, ctx, f"{real_set.split} images"))

    for batch in tqdm(test, desc="test batches", unit="batch", disable=processes.rank != 0):
        tested[batch.index] = len(batch)
        if real_set is test:
            keep_reference(batch)
        for row, generated, groups in generate_rows(rows, batch, labels.num_classes, p, device):
            streams[row.name].add(batch.index, inputs_for(row.condition, generated, reference, groups=groups,
                                                          real=batch.images, seg=batch.seg, sketch=batch.sketch,
                                                          text=batch.embeddings))
            if batch.positions[0] < SAMPLES_SHOWN:
                shown[row.name][batch.index] = generated[:SAMPLES_SHOWN]
    if real_set is not test:
        for batch in tqdm(real_set, desc="reference batches", unit="batch", disable=processes.rank != 0):
            keep_reference(batch)
    # one gather of everything: rank 0 finishes the metrics after it, while no other process waits for it
    gathered = ctx.gather((digests, shown, real, tested, {name: stream.local() for name, stream in streams.items()}))
    reference_images = distributed.on_rank0(lambda: _name_reference(reference, stage.dataset, real_set, gathered),
                                            processes)
    if processes.rank != 0:
        return {}
    table = {name: stream.finish([parts[name] for *_, parts in gathered]) for name, stream in streams.items()}
    samples = {row.name: _in_order([rank_shown[row.name] for _, rank_shown, *_ in gathered])[:SAMPLES_SHOWN]
               for row in rows}
    images = sum(count for *_, counts, _ in gathered for count in counts.values())
    record = protocol.record(stage, evaluation, images, reference_images, [(row.name, row.condition) for row in rows],
                             snapshot.name)
    written = write_report(layout.evaluation(model), table, samples=samples, log=snapshot.parent / "log.jsonl",
                           title=f"{model} on {stage.dataset}", random_weights=random_weights, protocol=record)
    written["dvc_metrics"] = write_metrics_json(layout.metrics(model), table, random_weights, record)
    if spilled.exists():  # absent when no metric of the run uses Inception's features
        shutil.rmtree(spilled)  # every process's: the others are done with theirs since the gather
    return written
