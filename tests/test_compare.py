"""`pipeline compare` on a tiny PoE-GAN run (two steps on shards written here, its CLIP a random ViT-S-32) beside a
model without a run: every cell is byte for byte what `pipeline generate` writes from that sample's own files and
the same seed; columns a model cannot fill say why; the numbers are the evaluation's, marked where random weights
made them, and hidden once the snapshot is newer; the page opens from disk, and from `pipeline browse`, in
chromium."""
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from train_shards import write_training_shards

from pipeline.cli import main
from shardio.shards import read_shard

pytestmark = pytest.mark.usefixtures("one_thread")

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
CLIP = {"model": "ViT-S-32", "pretrained": "random", "weights": "random", "sha256": "random"}  # as annotate records
CLIP_DIM = 384
CONDITIONS = {"unconditional": "none", "text": "text", "seg": "seg", "sketch": "sketch", "all": "all"}
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
NO_BROWSER = "Debian's chromium and chromium-driver are not installed: `make browser` installs them"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def write_card(data: Path, shards: list[Path]) -> None:
    """The card pack writes, as far as `pipeline browse` reads it for these shards."""
    card = {"dataset": "sample", "samples": 8, "splits": {"test": 4, "train": 4}, "label_map": "coco-stuff-182",
            "coverage": {}, "classes": [], "annotators": {"clip": CLIP}}
    (data / "sample" / "card.json").write_text(json.dumps(card))


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """(root, prefix of CLI args, output folder) after a two-step PoE-GAN run, its evaluation and a comparison of
    it with spade-seg, which has no run."""
    root = tmp_path_factory.mktemp("compare")
    data = root / "data"
    shards = [*write_training_shards(data / "sample" / "shards", images=4, per_shard=4, short_side=36,
                                     clip_dim=CLIP_DIM, annotators={"clip": CLIP}),
              *write_training_shards(data / "sample" / "shards", images=4, per_shard=4, short_side=36,
                                     clip_dim=CLIP_DIM, annotators={"clip": CLIP}, split="test", seed=1)]
    write_card(data, shards)
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    raw["train"]["poegan"].update(batch_size=2, workers=0, snapshot_every=2, sample_every=2, steps=2)
    raw["evaluate"].update(metrics=["fid", "kid"], num_images=2, batch_size=2, kid_subsets=2)
    raw["compare"].update(samples=2, draws=2, seed=3)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    prefix = ("--params", root / "params.yaml", "--data-dir", data, "--dataset", "sample")
    for command in (("train", "--steps", 2), ("evaluate",)):
        result = run(command[0], *prefix, "--model", "poegan", *command[1:])
        assert result.exit_code == 0, result.output
    out = root / "compare"
    result = run("compare", *prefix, "--models", "poegan,spade-seg", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert str(out / "index.html") in result.output
    return root, prefix, out


def test_each_cell_is_what_generate_writes_from_that_samples_files_and_seed(compared, tmp_path):
    root, prefix, out = compared
    test_shard = root / "data" / "sample" / "shards" / "test-000000.tar"
    members = dict(read_shard(test_shard))
    keys = sorted(p.name for p in (out / "inputs").iterdir())
    assert len(keys) == 2 and set(keys) <= set(members)
    for key in keys:  # the files given to the models are the sample's own members
        assert (out / "inputs" / key / "seg.png").read_bytes() == members[key]["seg.png"]
        assert (out / "inputs" / key / "sketch.png").read_bytes() == members[key]["sketch.png"]
    for condition in CONDITIONS:
        for key in keys:
            cell = out / "cells" / condition / "poegan" / key
            given = json.loads((cell / "generate.json").read_text())["modalities"]
            args = {"text": ("--text", members[key]["txt"].decode().splitlines()[0]),
                    "seg": ("--seg", out / "inputs" / key / "seg.png"),
                    "sketch": ("--sketch", out / "inputs" / key / "sketch.png")}
            expected = {"unconditional": [], "text": ["text"], "seg": ["seg"], "sketch": ["sketch"],
                        "all": ["text", "seg", "sketch"]}[condition]
            assert given == expected
            mine = tmp_path / condition / key
            result = run("generate", *prefix, "--model", "poegan", *[a for m in given for a in args[m]],
                         "--seed", 3, "--n", 2, "--out", mine)
            assert result.exit_code == 0, result.output
            for name in ("image-0000.png", "image-0001.png", "generate.json"):
                assert (cell / name).read_bytes() == (mine / name).read_bytes(), (condition, key, name)
    assert not (out / "cells" / "seg" / "spade-seg").exists()


def test_the_page_marks_what_a_model_cannot_show_and_the_numbers_it_has(compared):
    root, _, out = compared
    page = (out / "index.html").read_text()
    assert "not trained" in page and "pipeline train --dataset sample --model spade-seg" in page
    assert page.count("<img") >= 5 * 2 * 2  # every condition: two samples, two draws of PoE-GAN
    assert "RANDOM weights" in page  # the inputs' CLIP was random
    metrics = json.loads((root / "data/runs/sample/poegan/eval/metrics.json").read_text())
    for condition in CONDITIONS:
        assert f"{metrics[f'{condition}/fid']:.4g}†" in page  # random Inception: marked as in report.md
    assert "not comparable" in page and "metrics out of date" not in page
    assert "pipeline evaluate --dry-run" in page  # no protocol recorded in metrics.json: the plan's
    for name in CONDITIONS.values():
        assert (out / "grids" / f"{name}.png").stat().st_size > 1000
    assert "http" not in page.replace("http-equiv", "")  # nothing loaded from elsewhere


def test_a_snapshot_newer_than_its_metrics_hides_the_numbers(compared, tmp_path):
    root, prefix, _ = compared
    snapshot = root / "data/runs/sample/poegan/train/network-snapshot-000002.pt"
    metrics = root / "data/runs/sample/poegan/eval/metrics.json"
    before = snapshot.stat().st_mtime
    os.utime(snapshot, (metrics.stat().st_mtime + 10,) * 2)
    try:
        result = run("compare", *prefix, "--models", "poegan", "--out", tmp_path, "--no-progress")
        assert result.exit_code == 0, result.output
    finally:
        os.utime(snapshot, (before, before))
    page = (tmp_path / "index.html").read_text()
    assert "metrics out of date" in page and "pipeline evaluate --dataset sample --model poegan" in page
    assert "†" not in page


def test_bad_choices_are_refused_before_any_output(compared, tmp_path):
    _, prefix, _ = compared
    result = run("compare", *prefix, "--models", "poegan,nope", "--out", tmp_path / "a")
    assert result.exit_code == 2 and "nope" in result.output
    raw = yaml.safe_load(Path(prefix[1]).read_text())
    raw["compare"]["keys"] = ["not-a-test-key"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = run("compare", "--params", tmp_path / "params.yaml", *prefix[2:], "--out", tmp_path / "b")
    assert result.exit_code == 1 and "compare.keys: not-a-test-key" in result.output
    assert not (tmp_path / "b" / "index.html").exists()
