"""`pipeline annotate`: pseudo-label the image shards with the annotators on a Ray cluster (local by default)."""
from contextlib import ExitStack

import click

from shardio.modalities import ANNOTATORS
from .common import lock, stage_options


def _names(only: str | None, profile_annotate: list[str]) -> tuple[list[str], list[str]]:
    """(annotators to run, requested ones the profile does not pseudo-label)."""
    requested = [n.strip() for n in only.split(",") if n.strip()] if only else list(ANNOTATORS)
    unknown = [n for n in requested if n not in ANNOTATORS]
    if unknown:
        raise click.BadParameter(f"unknown annotator(s) {', '.join(unknown)}; known: {', '.join(ANNOTATORS)}",
                                 param_hint="--only")
    return [n for n in requested if n in profile_annotate], [n for n in requested if n not in profile_annotate]


@click.command("annotate")
@stage_options
@click.option("--only", metavar="NAMES", help=f"Comma-separated annotators to run ({','.join(ANNOTATORS)}) "
              "[default: every one in the dataset profile's `annotate` list].")
@click.option("--ray-address", metavar="ADDR", help="Existing Ray cluster to join [default: $RAY_ADDRESS, "
              "else a local Ray sized to this machine].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Images per model call [default: each "
              "annotator's `batch_size` param]. Never changes the output.")
@click.option("--workers", type=click.IntRange(min=1), help="Ray actors per annotator, each "
              "holding its own copy of the model [default: `annotate.runtime.workers`; 0 there = one per GPU, else "
              "CPUs minus reserved].")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0, max=1, min_open=True), help="GPUs each actor "
              "claims when the cluster has GPUs: 1, or a fraction to share one (an annotator runs on one GPU) "
              "[default: `annotate.runtime.gpus_per_worker`].")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def command(stage, only, ray_address, batch_size, workers, gpus_per_worker, progress):
    """Pseudo-label the image shards with the annotators on a Ray cluster (local by default).

    \b
    Reads   <data-dir>/<dataset>/images/{split}-{index:06d}.tar (run `pipeline ingest` first).
    Writes  <data-dir>/<dataset>/<annotator>/{split}-{index:06d}.tar: the image shard's keys in the
            same order; samples whose modality the dataset provides are skipped.
    Resume  a shard whose stats file carries the same fingerprint (annotator params + weights +
            input shard) and the shard's size is skipped; rerun after a crash to finish only what is
            missing. Shards of image shards no longer on disk are deleted.
    Lock    one run per annotator folder: a second one stops at once naming the first.
    Exit    1 when a shard failed or more images failed than `annotate.runtime.max_failed_fraction`,
            counted over every finished shard, this run's and earlier ones' (each failure is listed
            with its error in the shard's .stats.json).
    Cluster every node must see --data-dir at the same path (a shared filesystem) and have this
            project installed; workers read image shards and write annotation shards there.
    """
    names, skipped = _names(only, stage.profile.annotate)
    for name in skipped if only else []:
        click.echo(f"annotate: skipping {name}: dataset {stage.dataset!r} does not pseudo-label it "
                   f"(its profile's `annotate` list)", err=True)
        stage.layout.annotations(name).mkdir(parents=True, exist_ok=True)  # the (empty) output DVC expects
    if not names:
        return
    from shardio.tarcopy import ShardError

    with ExitStack() as held:
        for name in names:  # before Ray is even imported: a second run stops at once
            held.enter_context(lock(stage.layout.annotations(name), "annotate"))
        from ..annotate_run import run

        try:
            summaries = run(stage, names, ray_address, batch_size, workers, gpus_per_worker, progress)
        except (FileNotFoundError, RuntimeError, ShardError) as e:
            raise click.ClickException(str(e)) from None
    for summary in summaries:
        click.echo(summary.line())
    # every finished shard counts, not only this run's: a rerun of a failed strict run must fail again
    failed = sum(s.failed + s.earlier_failed for s in summaries)
    images = sum(s.annotated + s.earlier_annotated for s in summaries) + failed
    bad_shards = sum(len(s.failed_shards) for s in summaries)
    if bad_shards or (failed and failed > stage.params.annotate.runtime.max_failed_fraction * images):
        raise click.ClickException(f"{failed} image(s) and {bad_shards} shard(s) failed "
                                   f"(details in the annotation shards' .stats.json)")
