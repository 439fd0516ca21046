"""`pipeline where`: where a dataset's outputs are, and which of them exist."""
import click

from .common import stage_options


@click.command("where")
@stage_options
def command(stage):
    """Print where the dataset's shards, preview, checkpoints and metrics are (and whether they exist)."""
    layout = stage.layout
    rows = [("training shards", layout.shards), ("dataset card", layout.card_md), ("preview", layout.preview)]
    for model in type(stage.params.train).model_fields:
        run = layout.run(model)
        rows += [(f"{model} checkpoints", run), (f"{model} metrics", run / "eval" / "metrics.json")]
    for what, path in rows:
        click.echo(f"{what:>22}: {path}{'' if path.exists() else '  (not made yet)'}")
