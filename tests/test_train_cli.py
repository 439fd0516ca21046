"""`pipeline train`: dry-run parameter counts against the paper, refusal without VGG weights, a tiny run, and
the VGG-19 loader on torchvision's checkpoint layout."""
import re
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from torchvision.models.vgg import cfgs, make_layers
from train_shards import write_training_shards

from pipeline.cli import main
from train.vgg import RELU5_1, VGGRelu51

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
PAPER = {"celeba-1024": 33e6, "coco-256": 142e6}  # supplement Tables 1 and 2 (PoE-GAN column)

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(args, params=None):
    result = CliRunner().invoke(main, ["train", *args] + (["--params", str(params)] if params else []))
    return result


@pytest.mark.parametrize("config", ["celeba-1024", "coco-256"])
def test_dry_run_counts_generator_parameters_within_15_percent_of_the_paper(config):
    result = _run(["--config", config, "--dry-run"])
    assert result.exit_code == 0, result.output
    g = int(re.search(r"^generator parameters: (\d+)$", result.output, re.M)[1])
    d = int(re.search(r"^discriminator parameters: (\d+)$", result.output, re.M)[1])
    assert abs(g / PAPER[config] - 1) <= 0.15, f"{g:,} vs the paper's {PAPER[config]:,.0f}"
    assert d > 0


def test_unknown_config_is_a_usage_error_listing_the_known_ones():
    result = _run(["--config", "celeba-2048", "--dry-run"])
    assert result.exit_code == 2 and "celeba-1024" in result.output


def _params(tmp_path, **poegan):
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    raw["train"]["poegan"].update(poegan)
    raw["datasets"]["sample"]["overrides"].pop("train.defaults.vgg_weights", None)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_refuses_to_train_without_vgg_weights_unless_params_say_random(tmp_path):
    write_training_shards(tmp_path / "data" / "sample" / "shards", images=2, per_shard=2, short_side=20)
    result = _run(["--data-dir", str(tmp_path / "data"), "--steps", "1"], _params(tmp_path))
    assert result.exit_code == 1
    assert "vgg19-imagenet" in result.output and "not found" in result.output
    assert not (tmp_path / "data" / "runs" / "sample" / "poegan" / "train").exists()  # (its lock file beside it)


def test_tiny_trains_from_the_cli_with_random_vgg(tmp_path):
    data = tmp_path / "data"
    write_training_shards(data / "sample" / "shards", images=4, per_shard=2, short_side=36)
    params = _params(tmp_path, vgg_weights="random", batch_size=2, workers=1, snapshot_every=2, sample_every=2)
    result = _run(["--data-dir", str(data), "--steps", "2"], params)
    assert result.exit_code == 0, result.output
    run = data / "runs" / "sample" / "poegan" / "train"
    assert {p.name for p in run.iterdir()} >= {"log.jsonl", "samples-000002.png", "network-snapshot-000002.pt",
                                              "training-state-000002.pt"}
    assert "untrained VGG-19" in result.output
    assert "batch_gpu 2 (train.poegan.batch_gpu null: the whole share; no memory estimate on the CPU" in result.output


def test_vgg_loads_torchvision_checkpoint_layout(tmp_path):
    torch.manual_seed(0)
    # the key names and shapes of the features of torchvision's vgg19-dcbb9e9d.pth (its classifier is unused)
    public = {f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}
    public["classifier.0.weight"] = torch.zeros(8, 8)
    features = dict(public)
    path = tmp_path / "vgg19.pth"
    torch.save(features, path)
    net = VGGRelu51(path)
    assert torch.equal(net.features[28].weight, public["features.28.weight"])
    assert len(net.features) == RELU5_1 and isinstance(net.features[-1], torch.nn.ReLU)
    assert not any(p.requires_grad for p in net.parameters())
    torch.save({"classifier.0.weight": public["classifier.0.weight"]}, path)
    with pytest.raises(ValueError, match="not a torchvision VGG-19"):
        VGGRelu51(path)


@pytest.mark.slow
def test_two_process_torchrun_on_cpu_trains_with_the_same_code(tmp_path):
    import subprocess
    import sys

    data = tmp_path / "data"
    write_training_shards(data / "sample" / "shards", images=4, per_shard=2, short_side=36)
    params = _params(tmp_path, vgg_weights="random", batch_size=4, workers=0, snapshot_every=2, sample_every=2)
    torchrun = Path(sys.executable).with_name("torchrun")
    pipeline = Path(sys.executable).with_name("pipeline")
    subprocess.run([str(torchrun), "--nproc-per-node", "2", str(pipeline), "train", "--params", str(params),
                    "--data-dir", str(data), "--steps", "2", "--allow-cpu"], check=True, capture_output=True)
    state_file = data / "runs" / "sample" / "poegan" / "train" / "training-state-000002.pt"
    state = torch.load(state_file, weights_only=True)
    assert len(state["loader"]) == 2 and len(state["rng"]) == 2  # one position and RNG state per rank
