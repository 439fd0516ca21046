"""A run trained with `pipeline train --config` other than its dataset profile's is evaluated and sampled in the
configuration it was trained with, which its snapshots record; params changed since are named in a warning; a
snapshot from before snapshots carried the record is built from the params, with a warning saying so.

Every real configuration but `tiny` takes minutes per step on a CPU, so the profile here names `coco-64` and the
run trains `--config tiny`: without the record, evaluate and generate would build coco-64's generator."""
import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from train_shards import write_sample_shards

from pipeline.cli import main
from pipeline.params import load_params
from train import run_config
from train.families.poegan.configs import get_config
from train.models import REGISTRY, family

pytestmark = pytest.mark.usefixtures("one_thread")

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
SNAPSHOT = "network-snapshot-000002.pt"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def write_params(path: Path, **poegan) -> Path:
    """The repository's params with the sample profile on coco-64, a two-step run of two-image batches and a
    small LPIPS-diversity evaluation of the seg row; `poegan`: more train.poegan params."""
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    raw["datasets"]["sample"]["train_config"] = "coco-64"
    raw["train"]["poegan"].update(batch_size=2, workers=0, snapshot_every=2, sample_every=2, **poegan)
    raw["evaluate"].update(metrics=["lpips_diversity"], conditions=["seg"], num_images=4, batch_size=4,
                           diversity_groups=2, diversity_pairs=1, diversity_images=2)
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(root, data dir, params) of a PoE-GAN trained two steps with --config tiny on a profile of coco-64."""
    root = tmp_path_factory.mktemp("snapshot-config")
    data = root / "data"
    write_sample_shards(data)
    params = write_params(root / "params.yaml")
    result = run("train", "--params", params, "--data-dir", data, "--dataset", "sample", "--model", "poegan",
                 "--config", "tiny", "--steps", 2, "--allow-cpu")
    assert result.exit_code == 0, result.output
    return root, data, params


def test_the_snapshot_records_family_configuration_and_params(trained):
    _, data, _ = trained
    snapshot = data / "runs" / "sample" / "poegan" / "train" / SNAPSHOT
    saved = run_config.read(snapshot)
    assert saved["model"] == "poegan" and saved["config_name"] == "tiny"
    assert saved["config"]["resolution"] == 32 and saved["config"]["channel_base"] == get_config("tiny").channel_base
    assert saved["params"]["batch_size"] == 2 and saved["params"]["fit"] == "random-crop"
    assert "steps" not in saved["params"]  # how long it trains does not shape the network
    assert torch.load(snapshot, weights_only=True)[run_config.KEY] == json.dumps(saved, sort_keys=True)


@pytest.mark.parametrize("model", REGISTRY)
def test_every_family_rebuilds_its_configuration_from_the_record_as_json_gives_it_back(model):
    fam, section = family(model), load_params(REPO_PARAMS).train.model(model)
    cfg = fam.configure("tiny", section)
    saved = json.loads(json.dumps(run_config.record(model, "tiny", cfg, section)))
    assert run_config.rebuild(fam, saved, Path("snapshot.pt")) == cfg
    assert run_config.differences(saved, run_config.record(model, "tiny", cfg, section)) == []


def test_evaluate_and_generate_build_the_trained_configuration_and_name_what_the_params_change(trained, caplog):
    root, data, params = trained
    common = ("--params", params, "--data-dir", data, "--dataset", "sample", "--model", "poegan")
    result = run("evaluate", *common)
    assert result.exit_code == 0, result.output
    report = (data / "runs" / "sample" / "poegan" / "eval" / "report.md").read_text()
    assert f"configuration tiny as trained (recorded in {SNAPSHOT})" in report and "at 32 px" in report
    assert json.loads((data / "runs" / "sample" / "poegan" / "eval" / "metrics.json").read_text())["seg/lpips_diversity"] > 0
    assert "configuration: tiny → coco-64" in caplog.text and "config.resolution: 32 → 64" in caplog.text

    caplog.clear()
    changed = write_params(root / "changed.yaml", fit="resize")
    result = run("generate", "--params", changed, *common[2:], "--n", 1, "--out", root / "out")
    assert result.exit_code == 0, result.output
    image = next((root / "out").glob("image-*.png"))
    assert image.read_bytes()[16:24] == (32).to_bytes(4, "big") * 2  # the PNG's width and height: tiny's
    assert json.loads((root / "out" / "generate.json").read_text())["config"] == "tiny"
    assert 'train.poegan.fit: "random-crop" → "resize"' in caplog.text


def test_cluster_guided_is_fitted_in_the_configuration_of_the_poegan_snapshot_and_records_it(trained, tmp_path):
    _, data, _ = trained
    params = yaml.safe_load(write_params(tmp_path / "params.yaml").read_text())
    params["train"]["cluster-guided"].update(codes=40, kmeans_inits=1, rounds=2, steps_per_round=5,
                                             consistency_samples=20, batch_size=20, grid_size=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    fitted = tmp_path / "data"
    (fitted / "runs" / "sample").mkdir(parents=True)
    (fitted / "sample").symlink_to(data / "sample", target_is_directory=True)
    (fitted / "runs" / "sample" / "poegan").symlink_to(data / "runs" / "sample" / "poegan", target_is_directory=True)
    result = run("train", "--params", tmp_path / "params.yaml", "--data-dir", fitted, "--dataset", "sample",
                 "--model", "cluster-guided")
    assert result.exit_code == 0, result.output
    assert f"{SNAPSHOT} was trained with configuration tiny; cluster-guided is fitted in it" in result.output
    saved = run_config.read(next((fitted / "runs" / "sample" / "cluster-guided" / "train").glob("network-*.pt")))
    assert saved["model"] == "cluster-guided" and saved["config_name"] == "tiny"


def test_a_snapshot_without_a_record_is_built_from_the_params_with_a_warning(trained, tmp_path, caplog):
    _, data, _ = trained
    old = tmp_path / "data"
    old.mkdir()
    (old / "sample").symlink_to(data / "sample", target_is_directory=True)
    run_dir = old / "runs" / "sample" / "poegan" / "train"
    run_dir.mkdir(parents=True)
    payload = torch.load(data / "runs" / "sample" / "poegan" / "train" / SNAPSHOT, weights_only=True)
    del payload[run_config.KEY]
    torch.save(payload, run_dir / SNAPSHOT)
    common = ("--data-dir", old, "--dataset", "sample", "--model", "poegan", "--n", 1)

    result = run("generate", "--params", write_params(tmp_path / "profile.yaml"), *common, "--out", tmp_path / "a")
    assert result.exit_code == 1 and "does not fit poegan's generator" in result.output
    assert "train.poegan.config" in result.output and not (tmp_path / "a").exists()
    assert "predates snapshots that record their configuration" in caplog.text

    named = write_params(tmp_path / "named.yaml", config="tiny")
    result = run("generate", "--params", named, *common, "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b" / "generate.json").read_text())["config"] == "tiny"
