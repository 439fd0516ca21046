"""`pipeline sample`: draw the built-in sample dataset."""
from pathlib import Path

import click

from .common import stage_options


@click.command("sample")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write it [default: the `sample` profile's source path under --data-dir].")
@stage_options
def command(stage, out):
    """Draw the built-in sample: landscapes with exact segmentation and captions, plus packaged photos.

    Offline and byte-deterministic: the same params give the same files.
    """
    from ..sample import write_sample

    if out is None:
        if "sample" not in stage.params.datasets:
            raise click.UsageError("params define no `datasets.sample` profile; pass --out DIR")
        out = stage.layout.source(stage.params.datasets["sample"].source.path)
    counts = write_sample(out, stage.params.sample)
    click.echo(f"sample: {counts['landscapes']} drawn landscapes + {counts['photos']} photos -> {out}")
