"""`pipeline pack`: join image and annotation shards into training shards and write the dataset card."""
import click

from .common import lock, stage_options


@click.command("pack")
@stage_options
@click.option("--ray-address", metavar="ADDR", help="Ray cluster to pack on, one task per shard spread over its "
              "nodes [default: $RAY_ADDRESS, else `pack.workers` local threads]. Never changes the output.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def command(stage, ray_address, progress):
    """Join image and annotation shards into training shards and write the dataset card.

    \b
    Reads   <data-dir>/<dataset>/images/*.tar and the aligned <annotator>/*.tar of every annotator
            in the dataset profile's `annotate` list (run `pipeline annotate` first).
    Writes  <data-dir>/<dataset>/shards/{split}-{index:06d}.tar (one per image shard; members'
            byte ranges copied, no image decoded) with its .classes.json (class counts per sample, for
            `pipeline browse`), card.json and card.md (class counts from the `seg_classes` ingest and
            annotate recorded in their stats). Shards already packed under the same inputs and params
            (with their .classes.json) are skipped; training shards no image shard makes any more are
            deleted.
    Refuses an annotation shard made from an earlier version of its image shard (ingested again
            since), an input shard whose size is not the one its marker recorded (damaged), or a shard
            written before its stage recorded class counts: rerun the stage named.
    Cluster with --ray-address every node must see --data-dir at the same path (a shared filesystem).
    """
    from shardio.space import DiskFull, reporting_full_disk
    from .. import card, pack

    try:
        with lock(stage.layout.shards, "pack"), \
                reporting_full_disk(stage.layout.root, [], f"pipeline pack --dataset {stage.dataset}"):
            summary = pack.run(stage.layout, stage.params, stage.profile, progress=progress, address=ray_address)
            result = card.write_card(stage.layout, stage.profile.label_map)
    except (FileNotFoundError, ValueError, DiskFull) as e:
        raise click.ClickException(str(e)) from None
    missing = ", ".join(f"{name} {c['missing']}" for name, c in result["coverage"].items() if c["missing"])
    click.echo(f"pack: {summary['packed']} shard(s) packed, {summary['already_done']} already done; "
               f"{result['samples']} samples; missing per modality: {missing or 'none'}; "
               f"card: {stage.layout.card_md}")
