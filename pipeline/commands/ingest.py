"""`pipeline ingest`: turn a raw collection into validated, deduplicated, split image shards with a manifest."""
import os
from pathlib import Path

import click

from ..params.datasets import SOURCE_KINDS
from .common import lock, stage_options


@click.command("ingest")
@click.option("--source", "source_path", metavar="PATH",
              help="Read this folder / list / tar pattern instead of the profile's `source.path` "
                   "(relative to the current directory).")
@click.option("--kind", type=click.Choice(list(SOURCE_KINDS)),
              help="Source kind for --source [default: the profile's `source.kind` if the path fits it, else "
                   "inferred: a `.tar` pattern, a .txt/.csv/.parquet list, or a folder of images].")
@click.option("--workers", type=click.IntRange(min=0), default=None, show_default="0: all cores; on Ray, the "
              "cluster's CPUs less `annotate.runtime.reserve_cpus`", help="Local worker processes that scan "
              "images and write shards; on Ray, the most shard tasks running at once.")
@click.option("--ray-address", metavar="ADDR", help="Run on this Ray cluster, one task per shard [default: "
              "$RAY_ADDRESS; without either, local processes]. The bytes written are the same.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@stage_options
def command(stage, source_path, kind, workers, ray_address, progress):
    """Validate, deduplicate, split and shard the dataset's raw images.

    \b
    Writes under --data-dir/<dataset>/:
      images/{split}-{index:06d}.tar   jpg + json (+ provided seg.png, sketch.png, txt) per image, by content hash
      images/*.stats.json              per-shard marker, written last (a rerun redoes only the shards without one,
                                       or whose size is not the one it recorded)
      manifest.parquet                 key, source, sha256, width, height, split, shard, provided (+ stamps)
      rejects.parquet                  source, reason, detail (duplicates: reason `duplicate`, detail = kept source)
    A rerun reads no file whose size and modification time are those the manifest recorded.
    Exit 1 when no image is accepted, or when test_size would leave nothing to train on.
    Params: the `ingest` section and the profile's `source` and `test_size`.
    Cluster every node must see --data-dir and the source at the same paths (a shared filesystem).
    """
    from shardio.space import DiskFull, reporting_full_disk
    from ..executor import cluster_address
    from ..ingest import ingest
    from ..ingest_plan import SplitError
    from ..sources import SourceError

    source = _source(stage.profile.source, source_path, kind)
    address = cluster_address(ray_address)
    try:
        with lock(stage.layout.images, "ingest"), \
                reporting_full_disk(stage.layout.root, [], f"pipeline ingest --dataset {stage.dataset}"):
            summary = ingest(stage.layout, stage.params.ingest, source, stage.profile.test_size,
                             workers=workers or 0, progress=progress,
                             use_ray=address is not None, ray_address=address,
                             reserve_cpus=stage.params.annotate.runtime.reserve_cpus)
    except (SourceError, DiskFull) as e:
        raise click.ClickException(str(e)) from None
    except SplitError as e:
        raise click.ClickException(f"dataset {stage.dataset!r}: {e} (datasets.{stage.dataset}.test_size in "
                                   "the params file)") from None
    click.echo(summary.line())
    if not sum(summary.accepted.values()):
        reasons = ", ".join(f"{n} {reason}" for reason, n in summary.rejected.most_common()) or "nothing listed"
        raise click.ClickException(f"no image accepted from {source.path} (kind {source.kind}): {reasons}; "
                                   f"the reasons per file are in {stage.layout.rejects}")


def _source(profile_source, path: str | None, kind: str | None):
    """The profile's source, or --source PATH read as --kind, else as the profile's kind if the path fits it,
    else as the kind the path looks like (said on stderr)."""
    from ..sources import fits, infer_kind

    if path is None:
        return profile_source if kind is None else profile_source.model_copy(update={"kind": kind})
    path = os.path.abspath(os.path.expanduser(path))
    if kind is None:
        kind = profile_source.kind
        if not fits(kind, Path(path)) and (inferred := infer_kind(Path(path))) is not None:
            click.echo(f"ingest: reading {path} as kind {inferred!r} (inferred from the path; the profile's kind "
                       f"{kind!r} does not fit it; --kind chooses)", err=True)
            kind = inferred
    return profile_source.model_copy(update={"kind": kind, "path": path})
