"""The evaluation metrics: one name -> one function `f(EvalInputs, EvalContext) -> {key: float}`.

    from train.metrics import evaluate
    scores = evaluate(["fid", "seg_consistency"], EvalInputs(generated, reference=ref, seg=maps), ctx)

A metric only scores a set that has the inputs it needs (seg consistency needs the input maps, diversity needs
groups of samples, ...), so one call per condition gives that condition's row of the table. This module imports
nothing heavy: params validation uses `check_names` without loading torch.
"""
import importlib
from dataclasses import dataclass


class UnknownMetricError(ValueError):
    """A metric name that is not in the registry; the message lists the known ones."""


@dataclass(frozen=True)
class Entry:
    function: str  # "module:function"
    needs: tuple[str, ...]  # EvalInputs fields that must be present for the metric to apply


REGISTRY: dict[str, Entry] = {
    "fid": Entry("train.metrics.fid:fid", ("reference",)),
    "kid": Entry("train.metrics.fid:kid", ("reference",)),
    "seg_consistency": Entry("train.metrics.seg_consistency:seg_consistency", ("seg",)),
    "sketch_fscore": Entry("train.metrics.sketch_consistency:sketch_fscore", ("sketch",)),
    "clip_score": Entry("train.metrics.clip_score:clip_score", ("embeddings",)),
    "lpips_diversity": Entry("train.metrics.lpips_diversity:lpips_diversity", ("groups",)),
}


def check_names(names) -> list[str]:
    """`names` as a list if every one is a registered metric, else UnknownMetricError listing the known ones."""
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        raise UnknownMetricError(f"unknown metric{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                                 f"known: {', '.join(REGISTRY)}")
    return list(names)


def metric(name: str):
    """The function of the metric `name`; unknown names raise UnknownMetricError listing the known ones."""
    check_names([name])
    module, function = REGISTRY[name].function.split(":")
    return getattr(importlib.import_module(module), function)


def applies(name: str, inputs) -> bool:
    """Whether the metric `name` can score `inputs` (every input it needs is present)."""
    check_names([name])
    return all(getattr(inputs, need) is not None for need in REGISTRY[name].needs)


def evaluate(names, inputs, ctx) -> dict[str, float]:
    """The scores of every metric in `names` that applies to `inputs`, merged into one flat dict."""
    scores: dict[str, float] = {}
    for name in check_names(names):
        if applies(name, inputs):
            scores.update(metric(name)(inputs, ctx))
    return scores
