"""`pipeline browse`: page through the training shards in a web browser, or write them as a static site."""
from pathlib import Path

import click

from .common import stage_options


@click.command("browse")
@stage_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on (0.0.0.0 shows the dataset to your whole network).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to serve on (0: any free one).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Write a static site (page, pictures, data.js) to DIR instead of serving; opens from disk.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar while --out writes the site.")
def command(stage, host, port, out, progress):
    """Browse the packed dataset: samples with their segmentation overlay, sketch, captions and JSON.

    \b
    Reads   <data-dir>/<dataset>/shards/*.tar (+ stats and class counts), card.json, rejects.parquet
            (run `pipeline pack`).
    Writes  <shard>.index.json beside each training shard the page reaches (byte offsets of each member and
            each sample's classes, built once; rebuilt when the shard changes), or with --out the site.
    Filters: split, shard, class present (with a minimum share of pixels), missing modality; ingest's
    rejects with their reasons. Annotations made with random weights are marked in red.
    """
    from ..browse import Dataset
    from ..browse_web import make_server, write_site

    try:
        dataset = Dataset(stage.layout)
        if out is not None:
            samples = write_site(dataset, out, progress=progress)
            click.echo(f"browse: {samples} sample(s) written to {out / 'index.html'} (open it in a browser)")
            return
        server = make_server(dataset, host, port)
    except (FileNotFoundError, ValueError, KeyError, OSError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"browse: {stage.dataset} at http://{host}:{server.server_address[1]}/  (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
