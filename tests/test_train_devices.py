"""A CPU run where GPUs were expected is refused, naming the driver torch's CUDA build needs: NVIDIA GPUs that torch
cannot use (an old driver) or several processes started; `--allow-cpu` runs it anyway. An `nvidia-smi` on PATH
stands in for the machine's driver."""
import os

import pytest
import torch
from click.testing import CliRunner
from test_train_cli import _params
from train_shards import write_training_shards

from pipeline.cli import main
from train import devices, distributed
from train.devices import DeviceError


@pytest.fixture
def old_driver(tmp_path, monkeypatch):
    """An `nvidia-smi` that lists one H100 under driver 535 (older than torch's CUDA 13 build needs)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text('#!/bin/sh\ncase "$1" in\n  -L) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)";;\n'
                   '  *) echo "535.104.05";;\nesac\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not torch.cuda.is_available()


def test_gpus_torch_cannot_use_refuse_a_cpu_run_unless_allowed(old_driver):
    with pytest.raises(DeviceError) as refused:
        distributed.start(allow_cpu=False)
    message = str(refused.value)
    assert "NVIDIA H100" in message and "535.104.05" in message and "--allow-cpu" in message
    assert f"CUDA {torch.version.cuda}" in message and f">= {devices.driver_needed()}" in message
    assert distributed.start(allow_cpu=True) == distributed.Processes(0, 1, torch.device("cpu"))


def test_several_processes_without_gpus_are_refused_before_joining_a_group(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no nvidia-smi
    monkeypatch.setenv("WORLD_SIZE", "2")  # no MASTER_ADDR: joining would fail; the refusal comes first
    with pytest.raises(DeviceError, match="WORLD_SIZE=2"):
        distributed.start(allow_cpu=False)


def test_without_nvidia_smi_the_kernel_drivers_files_tell(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    gpus = tmp_path / "gpus"
    (gpus / "0000:17:00.0").mkdir(parents=True)
    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  Release Build\n")
    assert devices.nvidia_gpus(gpus) == ["GPU at PCI 0000:17:00.0"]
    assert devices.driver_version(version) == "550.54.15"
    assert devices.nvidia_gpus(tmp_path / "absent") == [] and devices.driver_version(tmp_path / "absent") is None


def test_pipeline_train_refuses_before_touching_the_run_folder(old_driver, tmp_path):
    data = tmp_path / "data"
    write_training_shards(data / "sample" / "shards", images=2, per_shard=2, short_side=20)
    params = _params(tmp_path, vgg_weights="random", batch_size=2, workers=0)
    result = CliRunner().invoke(main, ["train", "--params", str(params), "--data-dir", str(data), "--steps", "1"])
    assert result.exit_code == 1 and "--allow-cpu" in result.output and "535.104.05" in result.output
    assert not (data / "runs" / "sample" / "poegan" / "train").exists()  # only the run lock beside it
