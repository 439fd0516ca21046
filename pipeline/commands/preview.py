"""`pipeline preview`: draw a preview grid of random training samples and a class-frequency chart."""
import click

from .common import stage_options


@click.command("preview")
@stage_options
@click.option("--samples", type=click.IntRange(1, 256), help="Rows to draw [default: the `preview.samples` param].")
def command(stage, samples):
    """Draw a preview grid of random training samples and a class-frequency chart.

    \b
    Reads   <data-dir>/<dataset>/shards/*.tar and card.json (run `pipeline pack` first).
    Writes  <data-dir>/<dataset>/preview.png: rows of image | colourised segmentation | legend |
            sketch | caption (or the nearest caption by CLIP embedding), then the class-frequency chart.
            The rows are drawn with the `preview.seed` param, so the same data gives the same picture.
    """
    from ..preview import write_preview

    try:
        rows = write_preview(stage.layout, samples or stage.params.preview.samples, stage.params.preview.seed)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"preview: {rows} sample(s) drawn to {stage.layout.preview}")
