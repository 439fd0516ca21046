"""What an evaluation will compute, decided before any work: the model's configuration, the conditions it is
scored under, how many test images, and the per-GPU batch it generates in (by the memory estimate of its
generator). `pipeline evaluate --dry-run` prints it; `evaluate_run` follows it."""
from dataclasses import dataclass, field

from shardio.modalities import MEMBER_OF

from .conditions import CONDITIONS
from .data import DataError, fit_to_shards, shard_urls
from .eval_data import EvaluationError
from .memory import GB, GenerationEstimate, generation_estimate
from .metrics.seg_consistency import check_segmenter
from .models import family

# metric -> (annotator, its output member, the EvalContext field it fills)
ANNOTATOR_OF = {"seg_consistency": ("seg", MEMBER_OF["seg"], "segment"),
                "sketch_fscore": ("sketch", MEMBER_OF["sketch"], "detect_sketch"),
                "clip_score": ("clip", MEMBER_OF["clip"], "embed_images")}


def model_config(stage, model: str):
    """The configuration `pipeline train` built the model's run with (its params or the profile's, fitted to the
    training shards); no training shards is an EvaluationError."""
    section = stage.params.train.model(model)
    cfg = family(model).configure(section.config or stage.profile.train_config, section)
    try:
        return fit_to_shards(cfg, shard_urls(stage.layout.shards, "train"))
    except DataError as err:
        raise EvaluationError(str(err)) from None


@dataclass
class EvalPlan:
    """The evaluation of `model` as it will run: its configuration, the conditions scored, at most `limit` test
    images per condition, and the notes the report carries about these choices."""

    model: str
    cfg: object
    conditions: list[str]
    limit: int
    notes: list[str] = field(default_factory=list)


def plan(stage, model: str, num_images: int | None = None, cfg=None) -> EvalPlan:
    """The plan of evaluating `model` on the stage's dataset (`cfg`: its configuration, else `model_config`);
    a params choice that leaves nothing to evaluate is an EvaluationError."""
    p, fam = stage.params.evaluate, family(model)
    check_segmenter(p.metrics, stage.params.annotate.seg, stage.dataset, stage.profile.label_map)
    cfg = cfg if cfg is not None else model_config(stage, model)
    supported = fam.conditions or tuple(CONDITIONS)
    conditions = [c for c in p.conditions if c in supported]
    if not conditions:
        raise EvaluationError(f"evaluate.conditions {p.conditions} has none of the conditions model {model!r} "
                              f"takes: {', '.join(supported)}")
    limit, notes = num_images or p.num_images, []
    affordable = fam.eval_images(cfg) if fam.eval_images and not num_images else None
    if affordable is not None and affordable < limit:
        limit = affordable
        notes.append(f"{model} evaluates at most {affordable} test images per condition (what its profile's "
                     f"sampling affords), not evaluate.num_images {p.num_images}")
    return EvalPlan(model, cfg, conditions, limit, notes)


def scored_by(metrics: list[str], condition: str) -> list[str]:
    """The metrics of `metrics` that score the row of `condition` (those whose inputs it gives)."""
    from .metrics import REGISTRY

    given = {"reference", "groups", *CONDITIONS[condition]}
    return [m for m in metrics if set(REGISTRY[m].needs) <= given]


def per_gpu_batch(memory: GenerationEstimate, batch_size: int, capacity: float) -> int:
    """`batch_size` (evaluate.batch_size), or the largest smaller batch whose estimated generation peak fits
    `capacity` bytes; EvaluationError when not even one image fits."""
    fits = memory.largest_batch(capacity)
    if fits == 0:
        raise EvaluationError(f"generating one image needs an estimated {memory.peak(1) / GB:.1f} GB, more than "
                              f"the GPU's {capacity / GB:.1f} GB")
    return min(batch_size, fits)


def device_batch(p, fam, cfg, num_classes: int, device) -> tuple[int, str | None]:
    """(the batch evaluation generates in on `device`, a note for the report when it is below evaluate.batch_size):
    on a GPU the largest that fits its memory by the estimate, up to evaluate.batch_size; on the CPU that."""
    import torch

    if device.type != "cuda":
        return p.batch_size, None
    memory = generation_estimate(fam, cfg, num_classes)
    capacity = torch.cuda.get_device_properties(device).total_memory
    batch = per_gpu_batch(memory, p.batch_size, capacity)
    if batch == p.batch_size:
        return batch, None
    return batch, (f"generated in batches of {batch}, not evaluate.batch_size {p.batch_size}: the estimated peak at "
                   f"{p.batch_size} is {memory.peak(p.batch_size) / GB:.1f} GB, more than the GPU's "
                   f"{capacity / GB:.1f} GB (noise is drawn per batch: other batches, other images)")


def describe(stage, model: str, num_images: int | None, gpu_memory: float) -> list[str]:
    """The lines `pipeline evaluate --dry-run` prints: what the evaluation will compute and its per-GPU batch and
    estimated peak on a GPU of `gpu_memory` GB."""
    from annotators.labelmaps import load_label_map

    from .checkpoint import newest_snapshot

    p, fam, labels = stage.params.evaluate, family(model), load_label_map(stage.profile.label_map)
    lines = []
    try:
        cfg = model_config(stage, model)
    except EvaluationError:
        section = stage.params.train.model(model)
        cfg = fam.configure(section.config or stage.profile.train_config, section)
        lines.append("no training shards yet: the profile's configuration (its CLIP width) is assumed")
    evaluation = plan(stage, model, num_images, cfg)
    snapshot = newest_snapshot(stage.layout.training(model))
    test = stage.profile.test_size
    images = min(evaluation.limit, int(test)) if test >= 1 else evaluation.limit
    split = f"{int(test)} test images" if test >= 1 else f"a fraction {test} of the dataset as test images"
    scored = {c: scored_by(p.metrics, c) for c in evaluation.conditions}
    rows = "; ".join(f"{c}: {', '.join(metrics)}" for c, metrics in scored.items())
    lines += [
        f"model: {model} at {cfg.resolution} px, snapshot "
        f"{snapshot.name if snapshot else f'none yet in {stage.layout.training(model)}'}",
        f"rows (condition: metrics): {rows}"
        + (" (the mixture of every fitted cluster, then one row per cluster)" if fam.rows else ""),
        f"images per condition: {images} (evaluate.num_images {p.num_images}; {split}, the profile's test_size)",
        f"reference set (FID/KID): those {images} test images at {cfg.resolution} px; Inception weights "
        f"{p.inception_weights}",
    ]
    used = {m for metrics in scored.values() for m in metrics}
    for metric in (m for m in ANNOTATOR_OF if m in used):
        name = ANNOTATOR_OF[metric][0]
        section = getattr(stage.params.annotate, name)
        what = f"{section.model}, " if hasattr(section, "model") else ""
        lines.append(f"{metric}: the {name} annotator ({what}weights {section.weights}) on the generated images"
                     + (f", label map {labels.name} ({labels.num_classes} classes)" if name == "seg" else ""))
    if "lpips_diversity" in p.metrics:
        lines.append(f"lpips_diversity: {p.diversity_groups} groups of the first {p.diversity_images} conditions, "
                     f"{p.diversity_pairs} random pairs; AlexNet weights {p.lpips_weights}")
    lines.append(f"seeds: batch i's noise from (evaluate.seed {p.seed}, i); diversity groups from seed + 1 ... "
                 f"seed + {p.diversity_groups - 1}; crops and captions from the seed and each sample's key")
    memory = generation_estimate(fam, cfg, labels.num_classes)
    batch = per_gpu_batch(memory, p.batch_size, gpu_memory * GB)
    lines.append("processes: one, or under torchrun one per GPU, each generating every world-th batch; rank 0 "
                 "gathers the metrics' parts and writes the report")
    lines.append(f"per-GPU batch on {gpu_memory:g} GB: {batch} (evaluate.batch_size {p.batch_size}), estimated peak "
                 f"{memory.peak(batch) / GB:.1f} GB (fp32 generator forward with the batch's conditions on the "
                 f"device; generator weights {memory.static / GB:.2f} GB; the metric networks run after it)")
    return lines
