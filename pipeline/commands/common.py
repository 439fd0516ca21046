"""What every stage command shares: `--dataset`, `--params`, `--data-dir`, validated before any work."""
import functools
from dataclasses import dataclass
from pathlib import Path

import click

from shardio.layout import Layout
from shardio.lock import Busy, FolderLock, acquire
from ..params import DatasetProfile, Params, ParamsError, load_params


@dataclass(frozen=True)
class StageContext:
    """The validated params (with the dataset's overrides applied), its profile and where its files live."""

    params: Params
    dataset: str
    profile: DatasetProfile
    layout: Layout


def stage_options(command):
    """Add the common options; the command receives a validated `StageContext` as `stage`."""

    @click.option("--dataset", metavar="NAME", help="Dataset profile under `datasets` in the params file "
                  "[default: the file's `dataset` param].")
    @click.option("--params", "params_file", type=click.Path(dir_okay=False, path_type=Path),
                  default="params.yaml", show_default=True, help="Params file (validated whole, before any work).")
    @click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default="data",
                  show_default=True, help="Root of inputs and outputs (raw/, <dataset>/, weights/, runs/).")
    @functools.wraps(command)
    def wrapper(dataset, params_file, data_dir, **kwargs):
        try:
            params = load_params(params_file)
            name = dataset or params.dataset
            profile = params.profile(name)
            shadowed = params.shadowed(name)
            params = params.for_dataset(name)
        except ParamsError as e:
            raise click.UsageError(str(e)) from None
        for sentence in shadowed:
            click.echo(f"warning: {params_file}: {sentence}", err=True)
        return command(stage=StageContext(params, name, profile, Layout(data_dir, name)), **kwargs)

    return wrapper


def lock(folder: Path, command: str) -> FolderLock:
    """The lock of the output folder this run writes (`shardio.lock`), held until released; another run holding
    it is a ClickException naming that run."""
    try:
        return acquire(folder, f"pipeline {command}")
    except Busy as e:
        raise click.ClickException(str(e)) from None
