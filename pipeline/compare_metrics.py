"""`pipeline compare`, the numbers: every evaluated model x condition x metric from its run's metrics.json, the
protocol it was computed under, the random-weight networks that made it (marked as in report.md) and, where a
published table measured that model on that dataset, its number and whether the two are comparable."""
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from .compare_papers import NUMBERS, tables_for

log = logging.getLogger(__name__)

RANDOM_PREFIX = "random_weights/"
PROTOCOL_KEY = "protocol"  # evaluate's record of how the numbers were made, when metrics.json carries one


@dataclass(frozen=True)
class MetricRow:
    """One number of one run, with what the page says beside it."""

    model: str
    condition: str
    metric: str
    value: float | None
    random_weights: str | None  # the networks with random weights that made it; None: none did
    paper: float | None  # the published number, where one is recorded and comparable
    verdict: str  # "matched", "not comparable" or "no published number"
    why: str


def read_metrics(path: Path) -> tuple[dict[str, float | None], dict[str, str], object]:
    """(scores by "condition/metric", random-weight networks by metric, the recorded protocol or None) of one
    run's metrics.json; an unreadable file is a ValueError naming it and the command that rewrites it."""
    try:
        flat = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not readable as JSON ({err}); run `pipeline evaluate` for that model again") \
            from None
    protocol = {k: v for k, v in flat.items() if k == PROTOCOL_KEY or k.startswith(PROTOCOL_KEY + "/")} or None
    random = {k[len(RANDOM_PREFIX):]: v for k, v in flat.items() if k.startswith(RANDOM_PREFIX)}
    scores = {k: v for k, v in flat.items() if "/" in k and not k.startswith((RANDOM_PREFIX, PROTOCOL_KEY))
              and (v is None or isinstance(v, (int, float)))}
    return scores, random, protocol


def verdict(dataset: str, model: str, condition: str, metric: str, random: str | None) -> tuple:
    """(published number or None, verdict, why) of one run's number against the published tables."""
    tables = tables_for(dataset, model, metric)
    if not tables:
        return None, "not comparable", f"no published table reports {metric} of {model} on {dataset}"
    sources = "; ".join(t.source for _, t in tables)
    if random:
        return None, "not comparable", f"made by networks with random weights ({random}); {sources} used trained ones"
    for index, table in tables:
        number = NUMBERS.get((index, model, condition, metric))
        if number is not None:
            return number, "matched", f"{table.source}: {table.protocol}"
    return (None, "no published number",
            f"no number of {sources} is recorded for {condition} (pipeline/compare_papers.py)")


def metric_rows(dataset: str, model: str, path: Path) -> tuple[list[MetricRow], object]:
    """The rows of one run's metrics.json, and its recorded protocol (None: it records none)."""
    scores, random, protocol = read_metrics(path)
    rows = []
    for key, value in scores.items():
        condition, metric = key.split("/", 1)
        networks = random.get(metric)
        rows.append(MetricRow(model, condition, metric, value, networks,
                              *verdict(dataset, model, condition, metric, networks)))
    return rows, protocol


def planned_protocol(stage, model: str) -> list[str]:
    """What `pipeline evaluate --dry-run` plans for `model` under the current params (train/eval_plan.py: its
    conditions with the metrics scoring each, images per condition, weights, seed), without its GPU memory
    estimate; or one line saying why no plan could be made."""
    from train.eval_plan import plan, scored_by

    p = stage.params.evaluate
    try:
        planned = plan(stage, model)
    except Exception as err:  # noqa: BLE001 (a refused plan is shown, not raised: the page still shows the rest)
        log.warning("the evaluation plan of %s: %s", model, err)
        return [f"the evaluation plan could not be made: {err}"]
    rows = "; ".join(f"{c}: {', '.join(scored_by(p.metrics, c))}" for c in planned.conditions)
    return [f"rows (condition: metrics): {rows}", f"images per condition: at most {planned.limit}",
            f"Inception weights {p.inception_weights}; LPIPS weights {p.lpips_weights}; "
            f"annotators: seg {stage.params.annotate.seg.weights}, sketch {stage.params.annotate.sketch.weights}, "
            f"clip {stage.params.annotate.clip.weights}", f"seed: evaluate.seed {p.seed}", *planned.notes]
