"""`pipeline compare`, the numbers: every evaluated model x condition x metric from its run's metrics.json, the
protocol it was computed under, the random-weight networks that made it (marked as in report.md) and, where a
published table measured that model on that dataset, its number and whether the two are comparable."""
import json
from dataclasses import dataclass
from pathlib import Path

from train.conditions import CONDITIONS

from .compare_papers import published


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
    paper: float | None  # the published number of that row and metric, if a table has one (comparable or not)
    verdict: str  # "matched" or "not comparable"
    why: str


def read_metrics(path: Path) -> tuple[dict[str, float | None], dict[str, str], object]:
    """(scores by "condition/metric", random-weight networks by metric, the recorded protocol or None) of one
    run's metrics.json; an unreadable file is a ValueError naming it and the command that rewrites it."""
    try:
        flat = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not readable as JSON ({err}); run `pipeline evaluate` for that model again") \
            from None
    protocol = flat.get(PROTOCOL_KEY) if isinstance(flat.get(PROTOCOL_KEY), dict) else None
    random = {k[len(RANDOM_PREFIX):]: v for k, v in flat.items() if k.startswith(RANDOM_PREFIX)}
    scores = {k: v for k, v in flat.items() if "/" in k and not k.startswith((RANDOM_PREFIX, PROTOCOL_KEY))
              and (v is None or isinstance(v, (int, float)))}
    return scores, random, protocol


def verdict(dataset: str, model: str, condition: str, metric: str, random: str | None, resolution: int | None,
            reference: str | None) -> tuple:
    """(published number or None, verdict, why) of one run's number against the published tables: comparable when
    a table measured that model's metric under that condition on that dataset, with trained networks, at the
    run's resolution and against the run's reference split (where the table states them)."""
    found = published(dataset, model, condition, metric)
    if not found:
        return None, "not comparable", f"no published table reports {condition}/{metric} of {model} on {dataset}"
    table, number = found[0]
    if random:
        return number, "not comparable", f"made by networks with random weights ({random}); {table.source} was not"
    if table.resolution is not None and resolution != table.resolution:
        return number, "not comparable", f"the run is at {resolution} px, {table.source} at {table.resolution} px"
    if table.reference is not None and reference != table.reference:
        which = f"the {reference} split" if reference else "an unrecorded split"
        return number, "not comparable", f"FID against {which}; {table.source} against the {table.reference} split"
    return number, "matched", table.source + (f" (but {table.caveat})" if table.caveat else "")


def _row_order(key: str) -> tuple:
    """The supplement's conditions in their order, then a family's own rows (e.g. one per fitted cluster)."""
    condition, order = key.split("/")[0], list(CONDITIONS)
    return (order.index(condition) if condition in order else len(order), key)


def metric_rows(dataset: str, model: str, path: Path, resolution: int | None) -> tuple[list[MetricRow], object]:
    """The rows of one run's metrics.json (`resolution`: the run's, where its protocol record does not say), and
    its recorded protocol (None: it records none)."""
    scores, random, protocol = read_metrics(path)
    record = protocol or {}
    reference = record.get("reference", {}).get("split") if isinstance(record.get("reference"), dict) else None
    resolution = record.get("resolution", resolution)
    rows = []
    for key, value in sorted(scores.items(), key=lambda item: _row_order(item[0])):
        condition, metric = key.split("/", 1)
        networks = random.get(metric)
        rows.append(MetricRow(model, condition, metric, value, networks,
                              *verdict(dataset, model, condition, metric, networks, resolution, reference)))
    return rows, protocol
