"""`pipeline compare`: the same test samples through every model, side by side, with the runs' numbers."""
import re
from pathlib import Path

import click

from train.models import REGISTRY

from .common import lock, stage_options


@click.command("compare")
@stage_options
@click.option("--models", metavar="M,M,...", help=f"Models to compare, by commas or spaces [default: every model: "
              f"{', '.join(REGISTRY)}]; one without a run is listed as not trained.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder for index.html, grids/*.png, "
              "inputs/ and cells/ [default: data/runs/<dataset>/compare/].")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def command(stage, models, out, progress):
    """Give every model the same test samples (params `compare`: how many, or which keys) under each condition
    (none, text, seg, sketch, all) and write a page of the results: rows = samples, columns = models, each cell
    what `pipeline generate` draws from the model's newest snapshot with the sample's seg.png, sketch.png and
    caption and --seed compare.seed --n compare.draws; a model that cannot take a condition has its column
    marked with why. Beside them, every evaluated model's metrics with their protocol and the published
    numbers where dataset and protocol match. The page opens from disk; `pipeline browse` links to it.

    \b
    Examples (M1, M2: names --models lists):
      pipeline compare --dataset sample                   # every model
      pipeline compare --dataset sample --models M1,M2
    """
    import logging

    from annotators.weights import WeightsError
    from train.eval_data import EvaluationError
    from train.generate import GenerateError

    from ..compare import run_compare
    from ..compare_inputs import CompareError

    logging.basicConfig(format="%(levelname)s: %(message)s")
    names = re.split(r"[,\s]+", models.strip()) if models else list(REGISTRY)
    unknown = [m for m in names if m not in REGISTRY]
    if unknown or not names:
        raise click.UsageError(f"--models {models!r}: {', '.join(unknown) or 'no model'} not among "
                               f"{', '.join(REGISTRY)}")
    out = out or stage.layout.comparison
    with lock(out, "compare"):
        try:
            shown = run_compare(stage, names, out, progress)
        except (CompareError, GenerateError, EvaluationError, WeightsError, FileNotFoundError) as e:
            raise click.ClickException(str(e)) from None
    drawn = sum(len(c.images) > 0 for c in shown["cells"].values())
    click.echo(f"comparison of {len(names)} model(s) on {len(shown['samples'])} test samples ({drawn} cells drawn): "
               f"{shown['page']} (grids: {out / 'grids'})")
