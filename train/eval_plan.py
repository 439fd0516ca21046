"""What an evaluation will compute, decided before any work: the model's configuration, the conditions it is
scored under, how many test images, and the per-GPU batch it generates in (by the memory estimate of its
generator). `pipeline evaluate --dry-run` prints it; `evaluate_run` follows it."""
import logging
from dataclasses import dataclass, field
from pathlib import Path

from shardio.modalities import MEMBER_OF

from .conditions import CONDITIONS
from .data import DataError, fit_to_shards, shard_urls
from .eval_data import EvaluationError
from .memory import GB, GenerationEstimate, generation_estimate
from .metrics.seg_consistency import check_segmenter
from .models import family
from .run_config import RecordError, differences, read, rebuild, record

log = logging.getLogger(__name__)
# metric -> (annotator, its output member, the EvalContext field it fills)
ANNOTATOR_OF = {"seg_consistency": ("seg", MEMBER_OF["seg"], "segment"),
                "sketch_fscore": ("sketch", MEMBER_OF["sketch"], "detect_sketch"),
                "clip_score": ("clip", MEMBER_OF["clip"], "embed_images")}


def model_config(stage, model: str):
    """The configuration the params give `model` now, as `pipeline train` builds it (its params' profile or the
    dataset's, fitted to the training shards); no training shards is an EvaluationError."""
    section = stage.params.train.model(model)
    cfg = family(model).configure(section.config or stage.profile.train_config, section)
    try:
        return fit_to_shards(cfg, shard_urls(stage.layout.shards, "train"))
    except DataError as err:
        raise EvaluationError(str(err)) from None


@dataclass(frozen=True)
class Trained:
    """How a run's snapshot is built to evaluate or generate: its configuration and that configuration's name,
    the params `fit` its training images were brought to the resolution with, and notes for the report."""

    cfg: object
    config_name: str
    fit: str
    notes: list[str]


def trained(stage, model: str, snapshot: Path | None) -> Trained:
    """The configuration `snapshot` was trained with, from its record, with a warning naming each param that now
    gives another; a snapshot saved before snapshots carried a record: the params', with a warning saying so;
    no snapshot (None): the params'."""
    section = stage.params.train.model(model)
    name = section.config or stage.profile.train_config
    if snapshot is None:
        return Trained(model_config(stage, model), name, section.fit, [])
    saved = read(snapshot)
    if saved is None:
        notice = (f"{snapshot} predates snapshots that record their configuration: built from the params "
                  f"(configuration {name}); if it was trained with another (`pipeline train --config`), set "
                  f"train.{model}.config to that one")
        log.warning(notice)
        return Trained(model_config(stage, model), name, section.fit, [notice])
    if saved["model"] != model:
        raise EvaluationError(f"{snapshot} is a snapshot of {saved['model']}, not {model}: it does not belong in "
                              f"{model}'s run folder")
    try:
        cfg = rebuild(family(model), saved, snapshot)
    except RecordError as err:
        raise EvaluationError(str(err)) from None
    try:
        now = model_config(stage, model)
    except (EvaluationError, KeyError, ValueError):  # no shards, or no such profile now: names and params compare
        now = None
    notes = [f"configuration {saved['config_name']} as trained (recorded in {snapshot.name})"]
    changed = differences(saved, record(model, name, now, section))
    if changed:
        notes.append(f"{snapshot} is built as it was trained, not as the params now say, which differ "
                     f"(trained → now): {'; '.join(changed)}")
        log.warning(notes[-1])
    return Trained(cfg, saved["config_name"], saved["params"].get("fit", section.fit), notes)


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
    from .metrics.conditions import given_inputs

    return [m for m in metrics if set(REGISTRY[m].needs) <= given_inputs(condition)]


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
    """The lines `pipeline evaluate --dry-run` prints: the evaluation's protocol (`train.protocol`, as the report
    records it) and its per-GPU batch and estimated peak on a GPU of `gpu_memory` GB."""
    from annotators.labelmaps import load_label_map

    from . import protocol
    from .checkpoint import newest_snapshot

    p, fam, labels = stage.params.evaluate, family(model), load_label_map(stage.profile.label_map)
    lines = []
    snapshot = newest_snapshot(stage.layout.training(model))
    if snapshot is not None:
        run = trained(stage, model, snapshot)
        cfg, lines = run.cfg, list(run.notes)
    else:
        try:
            cfg = model_config(stage, model)
        except EvaluationError:
            section = stage.params.train.model(model)
            cfg = fam.configure(section.config or stage.profile.train_config, section)
            lines.append("no training shards yet: the profile's configuration (its CLIP width) is assumed")
    evaluation = plan(stage, model, num_images, cfg)
    test = stage.profile.test_size
    images = min(evaluation.limit, int(test)) if test >= 1 else evaluation.limit
    split = f"{int(test)} test images" if test >= 1 else f"a fraction {test} of the dataset as test images"
    reference = images if p.reference_split == "test" else p.num_images
    evaluation.notes.insert(0, f"images per condition: the fewer of {evaluation.limit} and {split} (the profile's "
                               f"test_size)" + ("" if reference == images else
                                                f"; reference set: at most {reference} training images"))
    if fam.rows:
        evaluation.notes.append("rows: the mixture of every fitted cluster, then one row per cluster")
    record = protocol.record(stage, evaluation, images, reference, snapshot=snapshot.name if snapshot else None)
    lines += protocol.lines(record)
    memory = generation_estimate(fam, cfg, labels.num_classes)
    batch = per_gpu_batch(memory, p.batch_size, gpu_memory * GB)
    lines.append("processes: one, or under torchrun one per GPU, each generating every world-th batch; rank 0 "
                 "gathers the metrics' parts and writes the report")
    lines.append(f"per-GPU batch on {gpu_memory:g} GB: {batch} (evaluate.batch_size {p.batch_size}), estimated peak "
                 f"{memory.peak(batch) / GB:.1f} GB (fp32 generator forward with the batch's conditions on the "
                 f"device; generator weights {memory.static / GB:.2f} GB; the metric networks run after it)")
    return lines
