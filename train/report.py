"""The evaluation report of one model: `metrics.json` (flat, for `dvc metrics show`), `report.md` with the table of
scores per condition and a sample grid per condition, and PNG plots (FID per condition, training curves).

    results = {"unconditional": {"fid": 41.2, "kid": 0.031}, "seg": {"fid": 30.1, "seg_miou": 0.42}, ...}
    write_report(run_dir / "eval", results, samples={"seg": images_uint8}, log=run_dir / "log.jsonl", title=...,
                 random_weights={"fid": ["inception"]})

A score computed by a network with random weights (`random_weights`: score key -> those networks) is marked
where it stands: a dagger in the table with a note naming the networks, and in metrics.json a string
`random_weights/<key>` naming them beside the numbers (`dvc metrics show` lists it as a column). The evaluation's
protocol record (`train.protocol`: rows, metrics and their networks, reference set, images, seeds) goes into
metrics.json under "protocol" and into report.md as a section, so the numbers never travel without it.
"""
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from shardio.shards import atomic_path  # noqa: E402

from .metrics.conditions import CONDITIONS  # noqa: E402
from .protocol import lines as protocol_lines  # noqa: E402

CONDITION_ORDER = list(CONDITIONS)  # the rows of the supplement's Tables 6 and 7
# a training log's wall-clock entries (train/loop.py): seconds of the process that trained the step and of its waits
# for data, which start again at a resume; a record of the run, not a curve of the training
WALL_CLOCK = ("sec", "data_sec")


class ReportError(ValueError):
    """Input the report cannot use; the message names the file or value."""


def _ordered(conditions) -> list[str]:
    known = [c for c in CONDITION_ORDER if c in conditions]
    return known + sorted(c for c in conditions if c not in CONDITION_ORDER)


RANDOM_MARK = "†"


def _measured(results: dict[str, dict[str, float]], random_weights: dict[str, list[str]] | None) -> dict:
    """The part of `random_weights` whose scores are in `results`."""
    present = {name for scores in results.values() for name in scores}
    return {key: networks for key, networks in sorted((random_weights or {}).items()) if key in present}


def flat_metrics(results: dict[str, dict[str, float]],
                 random_weights: dict[str, list[str]] | None = None) -> dict[str, float | str | None]:
    """{condition: {metric: value}} as one flat dict {"condition/metric": value}; NaN becomes None (JSON null).
    Each score key made by networks with random weights gets "random_weights/<key>": "<their names>"."""
    flat: dict[str, float | str | None] = {
        f"{condition}/{name}": (None if math.isnan(value) else float(value))
        for condition in _ordered(results) for name, value in sorted(results[condition].items())}
    flat.update({f"random_weights/{key}": ", ".join(networks)
                 for key, networks in _measured(results, random_weights).items()})
    return flat


def write_metrics_json(path: Path, results: dict[str, dict[str, float]],
                       random_weights: dict[str, list[str]] | None = None, protocol: dict | None = None) -> Path:
    """Write the flat metrics as JSON (sorted keys, atomic), with the evaluation's protocol record
    (`train.protocol`) under the key "protocol" when given."""
    metrics = flat_metrics(results, random_weights)
    if protocol is not None:
        metrics["protocol"] = protocol
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return Path(path)


def read_log(path: Path) -> list[dict]:
    """The {step, losses...} records of a training log.jsonl; a malformed line is an error naming the line."""
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ReportError(f"{path}:{number}: not JSON ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise ReportError(f"{path}:{number}: expected an object with an integer 'step'")
        records.append(record)
    return records


def plot_training_curves(path: Path, records: list[dict]) -> Path:
    """One panel per numeric log entry (losses, lr, ...) against the training step, written as PNG; the wall-clock
    entries (WALL_CLOCK) are left out, so the same training plots the same however often it was resumed."""
    series: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for name, value in record.items():
            if name not in ("step", *WALL_CLOCK) and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(name, []).append((record["step"], float(value)))
    if not series:
        raise ReportError(f"training log for {path.name}: no numeric entries besides 'step'")
    columns = min(3, len(series))
    rows = math.ceil(len(series) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.8 * rows), squeeze=False)
    for ax, (name, points) in zip(axes.flat, sorted(series.items())):
        steps, values = zip(*points)
        ax.plot(steps, values, linewidth=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(series):]:
        ax.axis("off")
    return _save(fig, path)


def plot_fid_per_condition(path: Path, results: dict[str, dict[str, float]], random: bool = False) -> Path:
    """A bar chart of FID per condition (the supplement's Tables 6 and 7 as a figure), written as PNG; `random`
    says in its title that the Inception network had random weights."""
    conditions = [c for c in _ordered(results) if "fid" in results[c]]
    if not conditions:
        raise ReportError("no condition has a FID to plot")
    values = [results[c]["fid"] for c in conditions]
    fig, ax = plt.subplots(figsize=(1.2 * len(conditions) + 2, 3))
    bars = ax.bar(conditions, values, color="#4C72B0")
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_ylabel("FID (lower is better)")
    ax.set_title("FID per condition" + (f" {RANDOM_MARK} random-weight Inception: not meaningful" if random else ""))
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return Path(path)


def image_grid(images: np.ndarray, columns: int = 8) -> np.ndarray:
    """uint8 images [N, H, W, 3] tiled row by row into one uint8 image, black where the last row is short."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or not len(images):
        raise ReportError(f"sample grid: expected uint8 images [N, H, W, 3], got {images.dtype} {images.shape}")
    n, h, w, _ = images.shape
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * h, columns * w, 3), np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * h:(row + 1) * h, column * w:(column + 1) * w] = image
    return grid


def save_png(path: Path, image: np.ndarray) -> Path:
    """Write a uint8 image as PNG, atomically."""
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        Image.fromarray(image).save(f, format="PNG")
    return Path(path)


def _cell(value, mark: str = "") -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}{mark}"


def markdown_table(results: dict[str, dict[str, float]], random_weights: dict[str, list[str]] | None = None) -> str:
    """The scores as a markdown table: one row per condition, one column per metric ('—' where not measured);
    each number made by networks with random weights carries RANDOM_MARK."""
    conditions = _ordered(results)
    names = sorted({name for scores in results.values() for name in scores},
                   key=lambda n: (n not in ("fid", "kid", "kid_std"), n))
    marks = {name: RANDOM_MARK for name in _measured(results, random_weights)}
    lines = ["| condition | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    lines += [f"| {c} | " + " | ".join(_cell(results[c].get(n), marks.get(n, "")) for n in names) + " |"
              for c in conditions]
    return "\n".join(lines)


def random_weights_note(results: dict[str, dict[str, float]], random_weights: dict[str, list[str]] | None) -> str:
    """The sentence under the table naming the networks with random weights and the scores they made ('' if none)."""
    by_networks: dict[str, list[str]] = {}
    for key, networks in _measured(results, random_weights).items():
        by_networks.setdefault(", ".join(networks), []).append(key)
    if not by_networks:
        return ""
    which = "; ".join(f"{', '.join(keys)} by {networks}" for networks, keys in by_networks.items())
    return (f"{RANDOM_MARK} Computed by networks with random weights, not meaningful and not comparable to published "
            f"numbers: {which}.")


def write_report(out_dir: Path, results: dict[str, dict[str, float]], samples: dict[str, np.ndarray] | None = None,
                 log: Path | None = None, title: str = "Evaluation", notes: list[str] | None = None,
                 random_weights: dict[str, list[str]] | None = None, protocol: dict | None = None) -> dict[str, Path]:
    """Write metrics.json, report.md, fid_per_condition.png, training_curves.png (when `log` exists) and
    samples_<condition>.png into `out_dir`; returns the written paths by name. `random_weights` maps a score key
    to the networks with random weights that made it; `protocol` (`train.protocol.record`) goes into metrics.json
    and, as lines, under the table."""
    out_dir = Path(out_dir)
    if not results:
        raise ReportError("no results to report")
    written = {"metrics": write_metrics_json(out_dir / "metrics.json", results, random_weights, protocol)}
    sections = [f"# {title}", "", markdown_table(results, random_weights), ""]
    note = random_weights_note(results, random_weights)
    sections += [note, ""] if note else []
    sections += [f"- {note}" for note in notes or []] + ([""] if notes else [])
    if protocol is not None:
        sections += ["## Protocol", "", *(f"- {line}" for line in protocol_lines(protocol)), ""]
    if any("fid" in scores for scores in results.values()):
        written["fid_plot"] = plot_fid_per_condition(out_dir / "fid_per_condition.png", results,
                                                    "fid" in (random_weights or {}))
        sections += ["## FID per condition", "", "![FID per condition](fid_per_condition.png)", ""]
    if log is not None and Path(log).is_file():
        written["training_curves"] = plot_training_curves(out_dir / "training_curves.png", read_log(log))
        sections += ["## Training curves", "", "![training curves](training_curves.png)", ""]
    for condition in _ordered(samples or {}):
        name = f"samples_{condition}.png"
        written[f"samples_{condition}"] = save_png(out_dir / name, image_grid(samples[condition]))
        sections += [f"## Samples: {condition}", "", f"![{condition}]({name})", ""]
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text("\n".join(sections))
    written["report"] = out_dir / "report.md"
    return written
