"""The evaluation metrics. Each name maps to two functions: `collect(EvalInputs of one batch, EvalContext)` turns
a batch of generated images into the little the metric keeps of it (Inception features, per-image scores,
pixel counts), and `finish(parts, EvalContext, reference)` turns what was kept into {key: float}. So an
evaluation set streams through in batches that are dropped once collected, and its parts can be gathered from
several processes (`EvalContext.gather`) before one of them finishes. Parts that grow with the images (FID's and
KID's features) are spilled to files as they come (`feature_files`), so memory does not.

    from train.metrics import MetricStream, evaluate
    scores = evaluate(["fid", "seg_consistency"], EvalInputs(generated, reference=ref, seg=maps), ctx)  # one batch
    stream = MetricStream(["fid"], ctx, ref)
    for index, batch in enumerate(batches):
        stream.add(index, EvalInputs(batch, reference=ref))
    scores = stream.result()

A metric only scores a set that has the inputs it needs (seg consistency needs the input maps, diversity needs
groups of samples, ...), so one stream per condition gives that condition's row of the table. This module imports
nothing heavy; `pipeline evaluate` checks `evaluate.metrics` with `check_names` before any work.
"""
import importlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .feature_files import Appender, assemble


class UnknownMetricError(ValueError):
    """A metric name that is not in the registry; the message lists the known ones."""


@dataclass(frozen=True)
class Entry:
    collect: str  # "module:function": f(EvalInputs, EvalContext) -> the part of one batch
    finish: str  # "module:function": f(parts, EvalContext, reference) -> {key: float}
    needs: tuple[str, ...]  # EvalInputs fields that must be present for the metric to apply
    keys: tuple[str, ...]  # the score keys `finish` returns
    summed: bool = False  # parts are counts added up as they come (finish gets the sum), else kept in batch order
    # parts are float32 feature rows, spilled to a file of the stream's as they come; finish gets them as one
    # [N, D] array mapped from disk, in batch order
    spilled: bool = False


REGISTRY: dict[str, Entry] = {
    "fid": Entry("train.metrics.fid:inception_features", "train.metrics.fid:fid", ("reference",), ("fid",),
                 spilled=True),
    "kid": Entry("train.metrics.fid:inception_features", "train.metrics.fid:kid", ("reference",), ("kid", "kid_std"),
                 spilled=True),
    "seg_consistency": Entry("train.metrics.seg_consistency:seg_counts", "train.metrics.seg_consistency:seg_consistency",
                             ("seg",), ("seg_miou", "seg_f1", "seg_pixel_accuracy"), summed=True),
    "sketch_fscore": Entry("train.metrics.sketch_consistency:sketch_counts",
                           "train.metrics.sketch_consistency:sketch_fscore", ("sketch",),
                           ("sketch_fscore", "sketch_precision", "sketch_recall"), summed=True),
    "clip_score": Entry("train.metrics.clip_score:image_scores", "train.metrics.clip_score:clip_score",
                        ("text",), ("clip_score",)),
    "lpips_diversity": Entry("train.metrics.lpips_diversity:pair_distances",
                             "train.metrics.lpips_diversity:lpips_diversity", ("groups",), ("lpips_diversity",)),
    "ssim": Entry("train.metrics.reconstruction:ssim_scores", "train.metrics.reconstruction:mean_ssim", ("real",),
                  ("ssim",)),
    "lpips_gt": Entry("train.metrics.reconstruction:lpips_gt_scores", "train.metrics.reconstruction:mean_lpips_gt",
                      ("real",), ("lpips_gt",)),
}


def check_names(names) -> list[str]:
    """`names` as a list if every one is a registered metric, else UnknownMetricError listing the known ones."""
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        raise UnknownMetricError(f"unknown metric{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                                 f"known: {', '.join(REGISTRY)}")
    return list(names)


def _function(ref: str):
    module, function = ref.split(":")
    return getattr(importlib.import_module(module), function)


def metric(name: str):
    """The metric `name` as one function of a whole evaluation set, `f(EvalInputs, EvalContext) -> {key: float}`;
    unknown names raise UnknownMetricError listing the known ones."""
    check_names([name])
    return lambda inputs, ctx: evaluate([name], inputs, ctx)


def applies(name: str, inputs) -> bool:
    """Whether the metric `name` can score `inputs` (every input it needs is present)."""
    check_names([name])
    return all(getattr(inputs, need) is not None for need in REGISTRY[name].needs)


def _add(total, part):
    return part if total is None else tuple(a + b for a, b in zip(total, part))


class MetricStream:
    """The scores of the metrics `names` over one evaluation set that arrives in batches: `add` keeps what each
    metric needs of a batch (each collect function runs once per batch, so FID and KID share the features),
    `result` gathers the parts of every process and finishes the metrics that applied to any batch. A batch's
    index places its parts: the same batches give the same scores in any order and split over any processes."""

    def __init__(self, names, ctx, reference=None):
        self.names, self.ctx, self.reference = check_names(names), ctx, reference
        self.parts: dict[str, dict[int, object]] = {}  # collect function -> {batch index: part}
        self.sums: dict[str, tuple] = {}  # collect function of a summed metric -> running total
        self.files: dict[str, Appender] = {}  # collect function of a spilled metric -> this process's file

    def add(self, index: int, inputs) -> None:
        """Collect batch number `index` (EvalInputs of one batch); the batch itself is not kept."""
        done = set()
        for name in self.names:
            entry = REGISTRY[name]
            if not applies(name, inputs) or entry.collect in done:
                continue
            done.add(entry.collect)
            part = _function(entry.collect)(inputs, self.ctx)
            if entry.summed:
                self.sums[entry.collect] = _add(self.sums.get(entry.collect), part)
            else:
                if entry.spilled:
                    if entry.collect not in self.files:
                        self.files[entry.collect] = Appender(self.ctx.scratch())
                    part = self.files[entry.collect].append(part)
                self.parts.setdefault(entry.collect, {})[index] = part

    def local(self) -> tuple[dict, dict]:
        """What this process kept: the part `finish` takes from each process."""
        return self.parts, self.sums

    def result(self) -> dict[str, float] | None:
        """{key: float} of every metric that applied to some batch, in the process that gathers (None in the
        others)."""
        gathered = self.ctx.gather(self.local())
        return None if gathered is None else self.finish(gathered)

    def finish(self, gathered: list[tuple[dict, dict]]) -> dict[str, float]:
        """{key: float} of every metric that applied to some batch of any process (`local()` of each)."""
        parts: dict[str, dict[int, object]] = {}
        sums: dict[str, tuple] = {}
        for process_parts, process_sums in gathered:
            for collect, by_index in process_parts.items():
                parts.setdefault(collect, {}).update(by_index)
            for collect, total in process_sums.items():
                sums[collect] = _add(sums.get(collect), total)
        ordered = {collect: [by_index[index] for index in sorted(by_index)] for collect, by_index in parts.items()}
        spilled = {REGISTRY[name].collect for name in self.names if REGISTRY[name].spilled}
        for collect in spilled & set(ordered):  # once for every metric that shares them
            with tempfile.NamedTemporaryFile(dir=self.ctx.scratch(), suffix=".npy", delete=False) as f:
                ordered[collect] = assemble(ordered[collect], Path(f.name))
        scores: dict[str, float] = {}
        for name in self.names:
            entry = REGISTRY[name]
            if entry.summed and entry.collect in sums:
                scores.update(_function(entry.finish)(sums[entry.collect], self.ctx, self.reference))
            elif not entry.summed and entry.collect in ordered:
                scores.update(_function(entry.finish)(ordered[entry.collect], self.ctx, self.reference))
        return scores


def evaluate(names, inputs, ctx) -> dict[str, float]:
    """The scores of every metric in `names` that applies to `inputs` (a whole evaluation set as one batch),
    merged into one flat dict."""
    stream = MetricStream(names, ctx, inputs.reference)
    stream.add(0, inputs)
    return stream.result()
