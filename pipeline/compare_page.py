"""`pipeline compare`, the page: index.html (styles inline, every picture a relative path under the output
folder, nothing loaded from elsewhere, so it opens from disk) with the models' states, the inputs, one grid per
condition and the numbers, plus the grids as PNG files (compare_grids.py)."""
import html
from pathlib import Path

from shardio.shards import atomic_path
from train.conditions import CONDITIONS
from train.protocol import lines as protocol_lines
from train.report import RANDOM_MARK, random_weights_note

from .compare_grids import write_grid
from .compare_metrics import metric_rows
from .compare_models import CURRENT, NOT_EVALUATED, NOT_TRAINED, OUT_OF_DATE

CONDITION_NAMES = {"unconditional": "none"}  # what the page and the grid files call a condition, if not its name
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; text-align: left; }
td.cell img, td.input img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated; }
td.input img { width: 128px; height: 128px; }
.why { max-width: 14em; color: #666; font-size: 12px; }
td.given { max-width: 16em; font-size: 12px; }
nav a { margin-right: 0.8em; }
.status-not-trained, .status-metrics-out-of-date, .status-not-evaluated { color: #b00; font-weight: bold; }
.random { color: #c00; }
.legend span { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.3em; vertical-align: middle; }
.legend { font-size: 12px; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _e(text) -> str:
    return html.escape(str(text))


def _rel(path: Path, out: Path) -> str:
    return _e(path.relative_to(out).as_posix())


def _models_table(states, out: Path) -> str:
    rows = []
    for s in states:
        snapshot = s.snapshot.name if s.snapshot else "—"
        todo = f"<code>{_e(s.command)}</code>" if s.command else ""
        rows.append(f'<tr data-model="{_e(s.name)}"><td>{_e(s.name)}</td>'
                    f'<td class="status-{s.status.replace(" ", "-")}">{_e(s.status)}</td>'
                    f"<td>{_e(snapshot)}</td><td>{todo}</td></tr>")
    return ('<table id="models"><tr><th>model</th><th>status</th><th>newest snapshot (draws the cells)</th>'
            "<th>to bring it up to date</th></tr>" + "".join(rows) + "</table>")


def _legend(sample) -> str:
    return '<div class="legend">' + "<br>".join(
        f'<span style="background:{colour}"></span>{_e(name)} {share:.0%}' for name, colour, share in sample.legend
    ) + "</div>"


def _inputs_table(samples, out: Path) -> str:
    rows = []
    for s in samples:
        marks = f' <span class="random">(RANDOM weights: {_e(", ".join(s.random_weights))})</span>' \
            if s.random_weights else ""

        def picture(path, what):
            return f'<img src="{_rel(path, out)}" alt="{what}">' if path else f"no {what}"

        rows.append(f'<tr data-key="{_e(s.key)}"><td>{_e(s.key)}{marks}</td>'
                    f'<td class="input">{picture(s.photo, "photo")}</td>'
                    f'<td class="input">{picture(s.seg_colour, "segmentation")}</td><td>{_legend(s)}</td>'
                    f'<td class="input">{picture(s.sketch, "sketch")}</td>'
                    f"<td>{_e(s.caption or '(no caption)')}</td></tr>")
    return ('<table id="inputs"><tr><th>test sample</th><th>photo</th><th>segmentation</th><th>classes</th>'
            "<th>sketch</th><th>caption</th></tr>" + "".join(rows) + "</table>")


def _given(condition: str, sample, out: Path) -> str:
    """What `condition` gives the models of `sample`, as the page shows it."""
    shown = {"seg": [sample.seg_colour], "sketch": [sample.sketch], "all": [sample.seg_colour, sample.sketch]}
    pictures = "".join(f'<img src="{_rel(p, out)}" alt="input">' for p in shown.get(condition, []) if p)
    caption = f"<div>{_e(sample.caption or '(no caption)')}</div>" if condition in ("text", "all") else ""
    return pictures + caption or "nothing"


def _grid_table(condition: str, samples, states, cells, out: Path) -> str:
    head = "<th>given</th>" + "".join(f"<th>{_e(s.name)}</th>" for s in states)
    rows = []
    for sample in samples:
        tds = []
        for s in states:
            cell = cells[condition, s.name, sample.key]
            if cell.images:
                body = "".join(f'<img src="{_rel(p, out)}" alt="{_e(s.name)}">' for p in cell.images)
                if len(cell.images) < cell.draws:
                    body += f'<div class="why">the same image at all {cell.draws} draws (no noise)</div>'
            else:
                body = f'<div class="why">{_e(cell.why)}</div>'
            tds.append(f'<td class="cell" data-model="{_e(s.name)}">{body}</td>')
        rows.append(f'<tr data-key="{_e(sample.key)}"><td class="input">'
                    f'<img src="{_rel(sample.photo, out)}" alt="photo"></td>'
                    f'<td class="input given">{_given(condition, sample, out)}</td>{"".join(tds)}</tr>')
    return (f'<table class="grid" data-condition="{_e(condition)}"><tr><th>sample</th>{head}</tr>'
            + "".join(rows) + "</table>")


def _numbers(stage, states) -> str:
    """The metrics table of the models whose metrics are of their newest snapshot, and each one's protocol."""
    rows, notes = [], []
    for s in states:
        if s.status == OUT_OF_DATE:
            notes.append(f'<p class="status-metrics-out-of-date">{_e(s.name)}: metrics out of date ({s.snapshot.name} '
                         f"is newer than {s.metrics}); its numbers are not shown: <code>{_e(s.command)}</code></p>")
        if s.status == NOT_EVALUATED:
            notes.append(f"<p>{_e(s.name)}: not evaluated: <code>{_e(s.command)}</code></p>")
        if s.status != CURRENT:
            continue
        found, protocol = metric_rows(stage.dataset, s.name, s.metrics, s.resolution)
        for r in found:
            value = "—" if r.value is None else f"{r.value:.4g}" + (RANDOM_MARK if r.random_weights else "")
            paper = "—" if r.paper is None else f"{r.paper:.4g}"
            rows.append(f"<tr><td>{_e(r.model)}</td><td>{_e(r.condition)}</td><td>{_e(r.metric)}</td>"
                        f"<td>{_e(value)}</td><td>{_e(paper)}</td><td>{_e(r.verdict)}</td><td>{_e(r.why)}</td></tr>")
        results = {}
        for r in found:
            results.setdefault(r.condition, {})[r.metric] = r.value
        random = {r.metric: [r.random_weights] for r in found if r.random_weights}
        note = random_weights_note(results, random)
        if protocol is not None:
            recorded = "\n".join(protocol_lines(protocol))
            made = f"recorded in {_e(s.metrics.name)}:<pre>{_e(recorded)}</pre>"
        else:
            made = (f"not recorded in {_e(s.metrics.name)} (evaluated before evaluations recorded it): <code>pipeline "
                    f"evaluate --dataset {_e(stage.dataset)} --model {_e(s.name)}</code> writes it")
        notes.append(f'<details class="protocol" data-model="{_e(s.name)}"><summary>{_e(s.name)}: protocol'
                     f"</summary>{made}</details>")
        notes += [f'<p class="random">{_e(s.name)}: {_e(note)}</p>'] if note else []
    table = ('<table id="metrics"><tr><th>model</th><th>condition</th><th>metric</th><th>this run</th>'
             "<th>paper</th><th>comparison</th><th>why</th></tr>" + "".join(rows) + "</table>")
    return table + "".join(notes)


def write_page(stage, out: Path, samples, states, cells, meta: dict) -> dict:
    """Write grids/<condition>.png and index.html under `out`; returns what they show."""
    p = stage.params.compare
    models = [s.name for s in states]
    sections = []
    for condition in CONDITIONS:
        name = CONDITION_NAMES.get(condition, condition)
        title = (f"{stage.dataset}: condition {name}; {len(samples)} test samples; "
                 f"pipeline generate --seed {p.seed} --n {p.draws}")
        grid = write_grid(out / "grids" / f"{name}.png", condition, title, samples, models, cells)
        sections.append(f'<h2 id="condition-{_e(name)}">Condition: {_e(name)}</h2><p>Paper-ready figure: '
                        f'<a href="{_rel(grid, out)}">{_rel(grid, out)}</a></p>'
                        + _grid_table(condition, samples, states, cells, out))
    random = [name for name, a in meta["annotators"].items() if a["random_weights"]]
    banner = (f'<p class="random" id="random-banner">The inputs were annotated by networks with RANDOM weights: '
              f'{_e(", ".join(random))}; they only look like annotations.</p>' if random else "")
    untrained = [s for s in states if s.status == NOT_TRAINED]
    made = (f"Made by <code>pipeline compare --dataset {_e(stage.dataset)}</code>: {len(samples)} test samples "
            f"({'compare.keys' if p.keys else f'drawn with compare.seed {p.seed}'}); every cell is what "
            f"<code>pipeline generate --seed {p.seed} --n {p.draws}</code> writes from the newest snapshot with the "
            "sample's seg.png as --seg, its sketch.png as --sketch and its first caption as --text "
            "(each cell's folder keeps its generate.json).")
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>{_e(stage.dataset)}: models compared</title>'
            f"<style>{STYLE}</style></head><body data-ready=\"1\"><h1>{_e(stage.dataset)}: models compared</h1>"
            f"<p>{made}</p>{banner}<nav>" + "".join(
                f'<a href="#condition-{n}">condition {n}</a>' for n in (CONDITION_NAMES.get(c, c) for c in CONDITIONS))
            + f'<a href="#numbers">numbers</a></nav><h2>Models</h2>{_models_table(states, out)}'
            + (f"<p>{len(untrained)} of {len(states)} models are not trained: their columns are marked.</p>"
               if untrained else "")
            + f"<h2>Inputs</h2>{_inputs_table(samples, out)}" + "".join(sections)
            + f'<h2 id="numbers">Numbers</h2>{_numbers(stage, states)}</body></html>')
    with atomic_path(out / "index.html") as tmp:
        tmp.write_text(page)
    return {"samples": samples, "states": states, "cells": cells, "page": out / "index.html"}
