"""The CLI surface: every subcommand explains itself and refuses bad params before writing anything."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import COMMANDS, main
from train.models import REGISTRY

REPO = Path(__file__).resolve().parents[1]
STAGES = ["sample", "ingest", "annotate", "pack", "preview", "train", "evaluate", "weights"]


def leaf_commands() -> list[tuple[list[str], click.Command]]:
    """Every runnable command as (argv prefix, command), descending into groups like `weights`."""
    ctx = click.Context(main)
    leaves = []
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        if isinstance(command, click.Group):
            leaves += [([name, sub], command.commands[sub]) for sub in command.commands]
        else:
            leaves.append(([name], command))
    return leaves


def dummy_arguments(command: click.Command, tmp_path: Path) -> list[str]:
    """Valid-looking values for a command's positional arguments (an existing file, a listed choice)."""
    dummy = tmp_path / "dummy.png"
    dummy.write_bytes(b"")
    values = []
    for param in command.params:
        if isinstance(param, click.Argument) and param.required:
            values.append(param.type.choices[0] if isinstance(param.type, click.Choice) else str(dummy))
    return values


def test_main_help_lists_the_stable_surface():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in STAGES:
        assert f"  {name} " in result.output
    assert set(STAGES) <= set(COMMANDS)


@pytest.mark.parametrize("argv", [argv for argv, _ in leaf_commands()], ids=" ".join)
def test_each_command_help_explains_the_common_options(argv):
    result = CliRunner().invoke(main, [*argv, "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--dataset", "--params", "--data-dir"):
        assert option in result.output


@pytest.mark.parametrize("argv", [argv for argv, _ in leaf_commands()], ids=" ".join)
def test_each_command_rejects_a_misspelled_key_before_writing(argv, tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["ingest"]["shard_szie"] = raw["ingest"].pop("shard_size")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    data_dir = tmp_path / "data"
    command = dict((tuple(a), c) for a, c in leaf_commands())[tuple(argv)]
    args = [*argv, *dummy_arguments(command, tmp_path), "--params", str(bad), "--data-dir", str(data_dir)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "ingest.shard_szie: unknown key (did you mean 'shard_size'?)" in result.output
    assert not data_dir.exists()


def test_unknown_dataset_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["sample", "--dataset", "imagenet", "--params", str(REPO / "params.yaml"),
                                       "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown dataset 'imagenet'" in result.output and "landscape" in result.output


def test_help_names_every_model_family_without_importing_torch():
    script = ("import json, sys; from click.testing import CliRunner; from pipeline.cli import main; "
              "helps = {c: CliRunner().invoke(main, [c, '--help']).output for c in ('train', 'evaluate', 'generate')}; "
              "CliRunner().invoke(main, ['--help']); print(json.dumps([helps, 'torch' in sys.modules]))")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO)
    helps, imported_torch = json.loads(run.stdout)
    assert not imported_torch  # the help stays fast
    for output in helps.values():
        assert f"--model [{'|'.join(REGISTRY)}]" in output


@pytest.mark.parametrize("command", ["train", "evaluate", "generate"])
def test_an_unknown_model_family_is_a_usage_error_naming_the_known_ones(command, tmp_path):
    result = CliRunner().invoke(main, [command, "--model", "stylegan", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2 and "'stylegan' is not one of" in result.output
    assert all(f"'{name}'" in result.output for name in REGISTRY) and not (tmp_path / "data").exists()


def test_console_script_is_installed():
    exe = shutil.which("pipeline", path=str(Path(sys.executable).parent))
    assert exe, "the `pipeline` console script is not installed next to this Python"
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "sample -> ingest -> annotate" in result.stdout


def test_sample_command_writes_the_sample_under_data_dir(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["sample"]["landscapes"] = 2
    params["sample"]["include_photos"] = False
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(main, ["sample", "--params", str(path), "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "d/raw/sample/images").iterdir()) == [
        "landscape-000.jpg", "landscape-001.jpg"]
