"""`pipeline where`: where a dataset's outputs are, and which of them exist."""
import click

from train.families import REGISTRY

from .common import stage_options


@click.command("where")
@stage_options
def command(stage):
    """Print where the dataset's shards, preview, checkpoints and metrics are (and whether they exist)."""
    layout = stage.layout
    rows = [("training shards", layout.shards), ("dataset card", layout.card_md), ("preview", layout.preview)]
    for model in REGISTRY:
        snapshots = sorted(layout.training(model).glob("network-snapshot-*.pt"))
        rows += [(f"{model} checkpoint", snapshots[-1] if snapshots else layout.training(model)),
                 (f"{model} metrics", layout.evaluation(model) / "metrics.json")]
    rows.append(("models compared", layout.comparison / "index.html"))
    for what, path in rows:
        click.echo(f"{what:>24}: {path}{'' if path.exists() else '  (not made yet)'}")
