"""The evaluation of one trained model (`pipeline evaluate`): G_ema of the run's newest snapshot generates the test
split under each condition of `evaluate.conditions` (only that condition's modalities given, several noise draws
for LPIPS diversity), one row per condition or per row the family names (`ModelFamily.rows`); the metrics score
each row and `write_report` writes metrics.json, report.md, plots."""
import hashlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from tqdm import tqdm

from annotators.weights import RANDOM, resolve

from . import checkpoint
from .configs import MODALITIES
from .data import DataError, Preprocess, fit_to_shards, make_example, seg_one_hot, shard_urls
from .metrics.base import EvalContext, Reference, annotator_fn
from .conditions import CONDITIONS, generator_modalities
from .metrics.conditions import evaluate_conditions, inputs_for
from .models import EvalRow, family
from .noise import private_noise
from .report import write_report

log = logging.getLogger(__name__)

# metric -> (annotator, its output member, the EvalContext field it fills)
ANNOTATOR_OF = {"seg_consistency": ("seg", "seg.png", "segment"), "sketch_fscore": ("sketch", "sketch.png",
                "detect_sketch"), "clip_score": ("clip", "clip.npy", "embed_images")}
SAMPLES_SHOWN = 32


class EvaluationError(ValueError):
    """An evaluation that cannot start; the message names the missing file or the wrong param."""


@dataclass
class TestSet:
    """The preprocessed test split: conditions as the generator takes them and as the metrics take them."""

    cond: dict  # image [N,3,H,W] in [-1,1], seg one-hot [N,C,H,W], sketch [N,1,H,W] in [0,1], text [N,D]
    images: np.ndarray  # uint8 [N, H, W, 3] real images (the FID reference)
    seg: np.ndarray  # uint8 [N, H, W] class ids, 255 = ignore
    sketch: np.ndarray  # uint8 [N, H, W], 255 = stroke
    embeddings: np.ndarray  # float32 [N, D] the text (or CLIP image) embedding the generator is given
    keys: list[str]  # the samples' content-derived keys, in the order read


def latest_snapshot(layout, model: str) -> Path:
    """The newest weight snapshot of the model's run, or EvaluationError saying to train first."""
    folder = layout.training(model)
    snapshot = checkpoint.newest_snapshot(folder)
    if snapshot is None:
        raise EvaluationError(f"no network-snapshot-*.pt in {folder}: run "
                              f"`pipeline train --dataset {layout.dataset} --model {model}` first")
    return snapshot


def model_config(stage, model: str):
    """The configuration `pipeline train` built the model's run with (its params or the profile's, fitted to the
    training shards); no training shards is an EvaluationError."""
    section = stage.params.train.model(model)
    cfg = family(model).configure(section.config or stage.profile.train_config, section)
    try:
        return fit_to_shards(cfg, shard_urls(stage.layout.shards, "train"))
    except DataError as err:
        raise EvaluationError(str(err)) from None


def load_generator(model: str, cfg, num_classes: int, snapshot: Path, device) -> torch.nn.Module:
    """The snapshot's G_ema (loaded strictly, weights only), in eval mode on `device`."""
    G = family(model).generator(cfg, num_classes)
    G.load_state_dict(checkpoint.load(snapshot)["G_ema"])
    return G.eval().requires_grad_(False).to(device)


def read_test_set(shards_dir: Path, resolution: int, num_classes: int, limit: int, seed: int,
                  preprocess: Preprocess = Preprocess()) -> TestSet:
    """At most `limit` test samples, in shard order, brought to `resolution` as training brings them (resized,
    or short side scaled and cropped at random; crop and caption choice drawn from `seed`); no test shards is an
    EvaluationError."""
    try:
        urls = shard_urls(shards_dir, "test")
    except DataError as err:
        raise EvaluationError(str(err)) from None
    rng = random.Random(seed)
    examples, keys = [], []
    samples = wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples(handler=wds.warn_and_continue))
    for sample in tqdm(samples, desc="test set", unit="img", total=limit, leave=False):
        try:
            examples.append(make_example(sample, resolution, num_classes, rng, preprocess))
            keys.append(sample["__key__"])
        except (OSError, ValueError, KeyError) as err:  # a bad sample is skipped, as in training
            log.warning("skipping test sample %s: %s", sample.get("__key__"), err)
        if len(examples) == limit:
            break
    if not examples:
        raise EvaluationError(f"no usable test samples in {shards_dir}")
    cond = torch.utils.data.default_collate(examples)
    seg = cond["seg"]
    cond["seg"] = seg_one_hot(seg, num_classes)
    return TestSet(cond, to_uint8(cond["image"]), seg.numpy(), (cond["sketch"][:, 0] * 255).round().byte().numpy(),
                   cond["text"].numpy(), keys)


def reference_set(dataset: str, test: TestSet, resolution: int) -> Reference:
    """The test images as the FID/KID reference set, named by a hash of their pixels: whatever changes them
    (re-ingest with another jpeg_quality or max_short_side, repacking, preprocessing, seed) gets its own cached
    features, and the same pixels find theirs again (the extractor's weights are in the cache key too)."""
    digest = hashlib.sha256()
    for image in test.images:  # one image at a time: no second copy of the whole set
        digest.update(np.ascontiguousarray(image).data)
    return Reference(f"{dataset}-{digest.hexdigest()[:16]}", "test", len(test.images), resolution,
                     lambda: [test.images])


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images [N,3,H,W] in [-1, 1] as uint8 [N, H, W, 3]."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def condition_masks(condition: str, batch: int, device) -> dict:
    """Generator modality masks giving every sample exactly the modalities of `condition`."""
    given = generator_modalities(condition)
    return {m: torch.full((batch,), m in given, dtype=torch.bool, device=device) for m in MODALITIES}


@torch.no_grad()
def generate(G, cond: dict, condition: str, seed: int, batch_size: int, device) -> np.ndarray:
    """uint8 [N, H, W, 3] images of G under `condition`, the noise drawn from `seed` (the same on every device;
    no global RNG, CPU or CUDA, is touched)."""
    out = []
    with private_noise(seed):
        for start in range(0, len(cond["image"]), batch_size):
            batch = {k: v[start:start + batch_size].to(device) for k, v in cond.items()}
            batch["style"] = batch["image"]  # masked out under every condition: the test image never leaks
            image, _ = G(batch, condition_masks(condition, len(batch["image"]), device))
            out.append(to_uint8(image))
    return np.concatenate(out)


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


def metric_weights(params, weights_dir: Path, cache_dir: Path):
    """The evaluate params with 'random' Inception / AlexNet weights replaced by random files (with a warning);
    weights the metrics need but the registry cannot give stop here, before any generation, with its message."""
    update = {}
    for field, kind, metrics in (("inception_weights", "inception", {"fid", "kid"}),
                                 ("lpips_weights", "alexnet", {"lpips_diversity"})):
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


def evaluate_run(stage, model: str, num_images: int | None = None) -> dict[str, Path]:
    """Evaluate the newest snapshot of `model` on the dataset's test split; returns write_report's paths."""
    from annotators.labelmaps import load_label_map

    params, layout = stage.params, stage.layout
    p = params.evaluate
    cfg = model_config(stage, model)
    labels = load_label_map(stage.profile.label_map)
    snapshot = latest_snapshot(layout, model)
    fam = family(model)
    supported = fam.conditions or tuple(CONDITIONS)
    conditions = [c for c in p.conditions if c in supported]
    if not conditions:
        raise EvaluationError(f"evaluate.conditions {p.conditions} has none of the conditions model {model!r} "
                              f"takes: {', '.join(supported)}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cache_dir = layout.data_dir / "cache" / "fid"
    metric_params = metric_weights(p, layout.weights, cache_dir)
    fit = params.train.model(model).fit  # the test images as the model saw its training images (never flipped)
    limit, notes = num_images or p.num_images, []
    affordable = fam.eval_images(cfg) if fam.eval_images and not num_images else None
    if affordable is not None and affordable < limit:
        limit = affordable
        notes.append(f"{model} evaluates at most {affordable} test images per condition (what its profile's "
                     f"sampling affords), not evaluate.num_images {p.num_images}")
    test = read_test_set(layout.shards, cfg.resolution, labels.num_classes, limit, p.seed, Preprocess(fit))
    ctx = EvalContext(metric_params, weights_dir=layout.weights, cache_dir=cache_dir, device=device,
                      **annotator_functions(p.metrics, params.annotate, layout.weights, device))
    reference = reference_set(stage.dataset, test, cfg.resolution)
    G = load_generator(model, cfg, labels.num_classes, snapshot, device)
    rows = [row for row in (fam.rows(G) if fam.rows else [EvalRow(c, c, G) for c in supported])
            if row.condition in conditions]
    groups_n = min(p.diversity_images, len(test.images))
    draws = p.diversity_groups if "lpips_diversity" in p.metrics else 1
    inputs, samples = {}, {}
    for row in tqdm(rows, desc="conditions", unit="condition"):
        generated = generate(row.generate, test.cond, row.condition, p.seed, p.batch_size, device)
        groups = None
        if draws > 1:
            subset = {k: v[:groups_n] for k, v in test.cond.items()}
            groups = np.stack([generated[:groups_n]] + [generate(row.generate, subset, row.condition, p.seed + g,
                                                                 p.batch_size, device) for g in range(1, draws)])
        inputs[row.name] = inputs_for(row.condition, generated, reference, groups=groups, seg=test.seg,
                                      sketch=test.sketch, embeddings=test.embeddings)
        samples[row.name] = generated[:SAMPLES_SHOWN]
    table = evaluate_conditions(p.metrics, inputs, ctx)
    notes.insert(0, f"snapshot {snapshot.name}, {len(test.images)} test images at {cfg.resolution} px, seed {p.seed}")
    return write_report(layout.evaluation(model), table, samples=samples, log=snapshot.parent / "log.jsonl",
                        title=f"{model} on {stage.dataset}", notes=notes)
