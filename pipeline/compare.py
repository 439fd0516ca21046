"""`pipeline compare`: the same test samples through every model, as the papers compare methods. For each sample
and each evaluation condition (none, text, seg, sketch, all) every trained model's newest snapshot draws
`compare.draws` images through `pipeline generate`'s own code (the sample's seg.png and sketch.png as --seg and
--sketch, its caption as --text, `compare.seed` as --seed), so a cell holds exactly what `pipeline generate`
writes for those inputs. The page (compare_page.py) sets the cells beside the inputs and the runs' numbers."""
import shutil
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from shardio.modalities import MODEL_MODALITIES
from train.conditions import CONDITIONS, generator_modalities

from .browse import Dataset
from .compare_inputs import Sample, pick, write_inputs
from .compare_models import NOT_TRAINED, ModelState, state
from .generate import Request, generate


@dataclass(frozen=True)
class Cell:
    """One model's output for one sample under one condition: the images it drew (distinct ones; a model without
    noise draws the same image each time), or why there are none."""

    images: tuple[Path, ...] = ()
    why: str | None = None
    draws: int = 0  # images drawn; more than len(images) when draws repeated


def request_for(sample: Sample, condition: str, seed: int, draws: int) -> Request | str:
    """The `pipeline generate` request that gives a model this sample under `condition`, or why the sample
    cannot give it (a modality it lacks)."""
    given = {m: sample.given(m) for m in MODEL_MODALITIES if m in generator_modalities(condition)}
    lacking = [m for m, value in given.items() if value is None]
    if lacking:
        return f"this sample has no {' or '.join('caption' if m == 'text' else m for m in lacking)}"
    return Request(**given, seed=seed, n=draws)


def draw_cell(stage, model: ModelState, sample: Sample, condition: str, out: Path) -> Cell:
    """The cell of `model` for `sample` under `condition`, drawn into `out` by `pipeline generate`'s code."""
    if model.status == NOT_TRAINED:
        return Cell(why=f"not trained: {model.command}")
    if condition in model.refusals:
        return Cell(why=model.refusals[condition])
    p = stage.params.compare
    request = request_for(sample, condition, p.seed, p.draws)
    if isinstance(request, str):
        return Cell(why=request)
    written = [path for path in generate(stage, model.name, request, out) if path.suffix == ".png"]
    distinct = {path.read_bytes(): path for path in reversed(written)}  # the first of each distinct image
    return Cell(tuple(sorted(distinct.values())), None, len(written))


def run_compare(stage, models: list[str], out: Path, progress: bool = True) -> dict:
    """Write the comparison of `models` on the stage's dataset into `out` (inputs/, cells/, grids/, index.html);
    returns what the page shows: samples, model states, cells by (condition, model, key), metric rows."""
    from .compare_page import write_page

    p = stage.params.compare
    dataset = Dataset(stage.layout)
    states = [state(stage, m) for m in models]  # before any work: a broken params choice fails here
    picked = pick(dataset, p.samples, p.seed, p.keys)
    (Path(out) / "index.html").unlink(missing_ok=True)  # written last: a run killed midway leaves no page
    for stale in ("inputs", "cells", "grids"):  # a rerun shows only what this run drew
        shutil.rmtree(Path(out) / stale, ignore_errors=True)
    samples = write_inputs(dataset, picked, Path(out) / "inputs")
    cells = {}
    jobs = [(c, m, s) for m in states for c in CONDITIONS for s in samples]  # model by model: one load each
    for condition, model, sample in tqdm(jobs, desc="compare", unit="cell", disable=not progress):
        folder = Path(out) / "cells" / condition / model.name / sample.key
        cells[condition, model.name, sample.key] = draw_cell(stage, model, sample, condition, folder)
    return write_page(stage, Path(out), samples, states, cells, dataset.meta())
