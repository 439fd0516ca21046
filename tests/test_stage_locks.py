"""Two runs on one output folder: the second stops at once naming the first; a run killed with SIGKILL leaves no
lock behind; a run's clean-up leaves the temporary files of running processes alone."""
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from image_shards import META, write_annotations, write_image_shards
from pipeline.cli import main
from shardio.layout import Layout
from shardio.lock import lock_path
from shardio.shards import keep_only
from train_shards import write_training_shards

# What the commands import before they take their lock, imported here so that a run's time is its own (the real
# CLI imports them at its start, torch included, before it does anything).
for module in ("pipeline.commands.ingest", "pipeline.ingest", "pipeline.commands.annotate", "pipeline.commands.pack",
               "pipeline.pack", "pipeline.card", "pipeline.commands.train", "train.models", "annotators.labelmaps"):
    importlib.import_module(module)

PIPELINE = str(Path(sys.executable).with_name("pipeline"))
# A run holding an output folder's lock as the stage commands take it, until it is killed.
HOLDER = ("import sys, time; from pathlib import Path; from pipeline.commands.common import lock; "
          "held = lock(Path(sys.argv[1]), sys.argv[2]); print('held', flush=True); time.sleep(600)")


def _params(tmp_path, **poegan):
    params = yaml.safe_load(open("params.yaml"))
    params["pack"]["workers"] = 1
    params["train"]["poegan"].update(batch_size=2, workers=0, tensorboard=False, **poegan)
    if poegan:  # the profile's own choices give way
        params["datasets"]["sample"]["overrides"] = {k: v for k, v in params["datasets"]["sample"]["overrides"].items()
                                                     if k.removeprefix("train.poegan.") not in poegan}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _invoke(layout, params_file, *args):
    """A stage run in this process: (exit code, output, seconds it took)."""
    start = time.monotonic()
    result = CliRunner().invoke(main, [*args, "--dataset", layout.dataset, "--params", str(params_file),
                                       "--data-dir", str(layout.data_dir)])
    return result.exit_code, result.output, time.monotonic() - start


def _kill(process):
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture
def holder():
    """Start a process holding `folder`'s lock for `command`; killed at the end."""
    started = []

    def start(folder: Path, command: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), command], stdout=subprocess.PIPE,
                                   text=True)
        started.append(process)
        assert process.stdout.readline() == "held\n"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            _kill(process)


@pytest.mark.parametrize("stage,folder", [("ingest", "images"), ("annotate", "clip"), ("pack", "shards")])
def test_a_second_run_of_a_stage_stops_at_once_naming_the_first(tmp_path, holder, stage, folder):
    layout = Layout(tmp_path / "data", "sample")
    held = layout.root / folder
    first = holder(held, stage)
    args = ["annotate", "--only", "clip"] if stage == "annotate" else [stage]
    code, output, seconds = _invoke(layout, _params(tmp_path), *args, "--no-progress")
    assert code == 1 and seconds < 1, output
    assert f"another `pipeline {stage}` (pid {first.pid}, started 20" in output
    assert f"is writing {held}; wait for it or stop it" in output


def test_pack_waits_for_no_lock_a_killed_run_left(tmp_path, holder):
    layout = Layout(tmp_path / "data", "sample")
    write_image_shards(layout, [2, 1])
    for name in META:
        write_annotations(layout, name)
    params_file = _params(tmp_path)
    first = holder(layout.shards, "pack")
    code, output, _ = _invoke(layout, params_file, "pack", "--no-progress")
    assert code == 1 and f"(pid {first.pid}, started" in output
    _kill(first)
    code, output, _ = _invoke(layout, params_file, "pack", "--no-progress")
    assert code == 0 and "2 shard(s) packed" in output, output


def test_a_second_train_stops_at_once_and_a_sigkilled_one_leaves_no_lock(tmp_path):
    layout = Layout(tmp_path / "data", "sample")
    write_training_shards(layout.shards, images=2, per_shard=2, short_side=36)
    params_file = _params(tmp_path)
    first = subprocess.Popen([PIPELINE, "train", "--dataset", "sample", "--params", str(params_file), "--data-dir",
                              str(layout.data_dir), "--steps", "100000"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    lock = lock_path(layout.training("poegan"))
    try:
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text()) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # until the first run holds the lock (it takes it before loading anything)
        assert first.poll() is None, first.stderr.read()
        code, output, seconds = _invoke(layout, params_file, "train", "--steps", "1")
        assert code == 1 and seconds < 1, output
        assert f"another `pipeline train` (pid {first.pid}, started 20" in output
        assert f"is writing {layout.training('poegan')}; wait for it or stop it" in output
    finally:
        _kill(first)
    # the next run gets past the lock to its next check (a training step costs minutes on a loaded CI machine):
    # here the VGG weights these params ask for and the test does not provide
    code, output, _ = _invoke(layout, _params(tmp_path, vgg_weights="vgg19-imagenet"), "train", "--steps", "1")
    assert code == 1 and "vgg19-imagenet" in output and "not found" in output, output


def test_clean_up_removes_the_temporaries_of_finished_processes_only(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    mine = tmp_path / f".train-000000.tar.tmp-{os.getpid()}"
    left = tmp_path / f".train-000001.tar.tmp-{int(ended.stdout)}"
    for path in (mine, left):
        path.write_bytes(b"half a shard")
    keep_only(tmp_path, set())
    assert mine.exists() and not left.exists()
