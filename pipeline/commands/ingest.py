"""`pipeline ingest`: turn a raw collection into validated, deduplicated, split image shards with a manifest."""
import os

import click

from ..params.datasets import SOURCE_KINDS
from .common import stage_options


@click.command("ingest")
@click.option("--source", "source_path", metavar="PATH",
              help="Read this folder / list / tar pattern instead of the profile's `source.path` "
                   "(relative to the current directory).")
@click.option("--kind", type=click.Choice(SOURCE_KINDS),
              help="Source kind for --source [default: the profile's `source.kind`].")
@click.option("--workers", type=click.IntRange(min=1), default=lambda: _cores(),
              show_default="all cores", help="Processes that scan and write shards.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@stage_options
def command(stage, source_path, kind, workers, progress):
    """Validate, deduplicate, split and shard the dataset's raw images.

    \b
    Writes under --data-dir/<dataset>/:
      images/{split}-{index:06d}.tar   jpg + json (+ provided seg.png, sketch.png, txt) per image, by content hash
      images/*.stats.json              per-shard marker, written last (a rerun redoes only unmarked shards)
      manifest.parquet                 key, source, sha256, width, height, split, shard, provided
      rejects.parquet                  source, reason, detail (duplicates: reason `duplicate`, detail = kept source)
    Params: the `ingest` section and the profile's `source` and `test_size`.
    """
    from ..ingest import ingest
    from ..sources import SourceError

    source = stage.profile.source
    if source_path is not None or kind is not None:
        update = {"kind": kind or source.kind}
        if source_path is not None:
            update["path"] = os.path.abspath(source_path)
        source = source.model_copy(update=update)
    try:
        summary = ingest(stage.layout, stage.params.ingest, source, stage.profile.test_size,
                         workers=workers, progress=progress)
    except SourceError as e:
        raise click.ClickException(str(e)) from None
    click.echo(summary.line())


def _cores() -> int:
    from ..ingest import available_cores  # imported only when the command runs: `--help` stays fast

    return available_cores()
