"""`pipeline compare`, the models: which have a run, which snapshot draws their cells, whether their metrics are
of that snapshot, and which of the evaluation conditions each can take (and why not)."""
from dataclasses import dataclass, field
from pathlib import Path

from train.checkpoint import newest_snapshot
from train.conditions import CONDITIONS, generator_modalities
from train.eval_data import EvaluationError
from train.eval_plan import model_config
from train.models import family

NOT_TRAINED, NOT_EVALUATED, OUT_OF_DATE, CURRENT = ("not trained", "not evaluated", "metrics out of date",
                                                    "metrics current")


@dataclass
class ModelState:
    """One model as the page lists it: its status, the command that brings it up to date (None: nothing to do),
    its newest snapshot and metrics file, and per condition why it cannot take it (absent: it can)."""

    name: str
    status: str
    command: str | None = None
    snapshot: Path | None = None
    metrics: Path | None = None
    refusals: dict[str, str] = field(default_factory=dict)
    resolution: int | None = None  # of its configuration under the current params


def state(stage, model: str) -> ModelState:
    """The model's state on the stage's dataset: a run without a snapshot is not trained; metrics.json older
    than the newest snapshot are out of date (the snapshot draws the cells, the metrics are of an older one)."""
    dataset = stage.dataset
    snapshot = newest_snapshot(stage.layout.training(model))
    if snapshot is None:
        return ModelState(model, NOT_TRAINED, f"pipeline train --dataset {dataset} --model {model}")
    metrics = stage.layout.evaluation(model) / "metrics.json"
    evaluate = f"pipeline evaluate --dataset {dataset} --model {model}"
    if not metrics.is_file():
        found = ModelState(model, NOT_EVALUATED, evaluate, snapshot)
    elif snapshot.stat().st_mtime > metrics.stat().st_mtime:
        found = ModelState(model, OUT_OF_DATE, evaluate, snapshot, metrics)
    else:
        found = ModelState(model, CURRENT, None, snapshot, metrics)
    fam = family(model)
    try:
        cfg = model_config(stage, model)
    except EvaluationError as err:
        found.refusals = {c: str(err) for c in CONDITIONS}
        return found
    found.resolution = cfg.resolution
    for condition in CONDITIONS:
        refusal = fam.refusal(cfg, sorted(generator_modalities(condition)))
        if refusal:
            found.refusals[condition] = f"{model} {refusal}"
    return found
