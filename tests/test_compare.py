"""`pipeline compare` on a tiny PoE-GAN run (two steps on shards written here, its CLIP a random ViT-S-32) beside a
model without a run: every cell is byte for byte what `pipeline generate` writes from that sample's own files and
the same seed; columns a model cannot fill say why; the numbers are the evaluation's, marked where random weights
made them, and hidden once the snapshot is newer; the page opens from disk, and from `pipeline browse`, in
chromium."""
import html
import json
import os
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from headless import browser, needs_browser  # noqa: F401 (browser: a fixture)
from train_shards import write_training_shards

from pipeline.cli import main
from shardio.shards import read_shard
from train.protocol import lines as protocol_lines

pytestmark = pytest.mark.usefixtures("one_thread")

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
CLIP = {"model": "ViT-S-32", "pretrained": "random", "weights": "random", "sha256": "random"}  # as annotate records
CLIP_DIM = 384
CONDITIONS = {"unconditional": "none", "text": "text", "seg": "seg", "sketch": "sketch", "all": "all"}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def write_card(data: Path) -> None:
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
    for split, seed in (("train", 0), ("test", 1)):
        write_training_shards(data / "sample" / "shards", images=4, per_shard=4, short_side=36, clip_dim=CLIP_DIM,
                              annotators={"clip": CLIP}, split=split, seed=seed)
    write_card(data)
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    raw["train"]["poegan"].update(batch_size=2, workers=0, snapshot_every=2, sample_every=2, steps=2)
    raw["evaluate"].update(metrics=["fid"], conditions=["unconditional", "seg"], num_images=2, batch_size=2)
    raw["compare"].update(samples=2, draws=2, seed=3)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    prefix = ("--params", root / "params.yaml", "--data-dir", data, "--dataset", "sample")
    for command in (("train", "--steps", 2), ("evaluate",)):
        result = run(command[0], *prefix, "--model", "poegan", *command[1:])
        assert result.exit_code == 0, result.output
    out = data / "runs" / "sample" / "compare"  # the default: where `pipeline browse` finds it
    result = run("compare", *prefix, "--models", "poegan,spade-seg", "--no-progress")
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
    for condition in ("unconditional", "seg"):  # the evaluated ones
        assert f"{metrics[f'{condition}/fid']:.4g}†" in page  # random Inception: marked as in report.md
    assert "not comparable" in page and "metrics out of date" not in page
    protocol = "\n".join(protocol_lines(metrics["protocol"]))  # as evaluate recorded it and its dry run prints it
    assert html.escape(protocol) in page
    for name in CONDITIONS.values():
        assert (out / "grids" / f"{name}.png").stat().st_size > 1000
    assert "http" not in page.replace("http-equiv", "")  # nothing loaded from elsewhere


def test_a_snapshot_newer_than_its_metrics_hides_the_numbers(compared, tmp_path):
    root, prefix, _ = compared
    snapshot = root / "data/runs/sample/poegan/train/network-snapshot-000002.pt"
    metrics = root / "data/runs/sample/poegan/eval/metrics.json"
    raw = yaml.safe_load(Path(prefix[1]).read_text())
    raw["compare"].update(samples=1, draws=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    before = snapshot.stat().st_mtime
    os.utime(snapshot, (metrics.stat().st_mtime + 10,) * 2)
    try:
        result = run("compare", "--params", tmp_path / "params.yaml", *prefix[2:], "--models", "poegan",
                     "--out", tmp_path / "out", "--no-progress")
        assert result.exit_code == 0, result.output
    finally:
        os.utime(snapshot, (before, before))
    page = (tmp_path / "out" / "index.html").read_text()
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


def _shows_the_comparison(driver) -> None:
    """The comparison page is loaded: every grid has a row per sample, PoE-GAN's cells show both draws (loaded),
    spade-seg's say it is not trained and how to train it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    grids = driver.find_elements(By.CSS_SELECTOR, "table.grid")
    assert [g.get_attribute("data-condition") for g in grids] == list(CONDITIONS)
    for grid in grids:
        rows = grid.find_elements(By.CSS_SELECTOR, "tr[data-key]")
        assert len(rows) == 2
        for row in rows:
            drawn = row.find_elements(By.CSS_SELECTOR, 'td[data-model="poegan"] img')
            assert len(drawn) == 2
            assert "not trained: pipeline train --dataset sample --model spade-seg" in \
                row.find_element(By.CSS_SELECTOR, 'td[data-model="spade-seg"]').text
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return [...document.images].every((i) => i.complete && i.naturalWidth > 0)"))
    legend = driver.find_element(By.CSS_SELECTOR, "#inputs .legend")
    assert legend.find_elements(By.TAG_NAME, "span") and "%" in legend.text


@needs_browser
def test_the_page_opens_from_disk_in_chromium(compared, browser):
    _, _, out = compared
    browser.get((out / "index.html").as_uri())
    _shows_the_comparison(browser)


@needs_browser
def test_browse_reaches_it_as_its_models_view_served_and_as_a_static_site(compared, browser, tmp_path):
    from selenium.webdriver.common.by import By

    from pipeline.browse import Dataset
    from pipeline.browse_web import make_server, write_site
    from shardio.layout import Layout

    root, _, _ = compared
    dataset = Dataset(Layout(root / "data", "sample"))
    server = make_server(dataset, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
        browser.find_element(By.ID, "view-models").click()
        _shows_the_comparison(browser)
    finally:
        server.shutdown()
        server.server_close()
    write_site(dataset, tmp_path / "site", progress=False)
    browser.get((tmp_path / "site" / "index.html").as_uri())
    browser.find_element(By.ID, "view-models").click()
    _shows_the_comparison(browser)


def test_a_published_number_matches_only_at_its_dataset_resolution_reference_and_trained_networks(tmp_path):
    from pipeline.compare_metrics import metric_rows
    from pipeline.compare_papers import NUMBERS
    from train.report import write_metrics_json

    results = {"seg": {"fid": 20.0, "seg_miou": 0.7}, "sketch": {"fid": 15.0}}

    def rows(dataset, model, resolution=256, random=None, protocol=None):
        path = write_metrics_json(tmp_path / "metrics.json", results, random)
        if protocol is not None:
            path.write_text(json.dumps({**json.loads(path.read_text()), "protocol": protocol}))
        found, _ = metric_rows(dataset, model, path, resolution)
        return {f"{r.condition}/{r.metric}": r for r in found}

    matched = rows("mm-celeba-hq", "poegan")
    assert matched["seg/fid"].verdict == "matched" and matched["seg/fid"].paper == NUMBERS["poegan-6", "seg", "fid"]
    assert matched["seg/seg_miou"].verdict == "not comparable" and "no published table" in matched["seg/seg_miou"].why
    small = rows("mm-celeba-hq", "poegan", resolution=32)["sketch/fid"]
    assert small.verdict == "not comparable" and "32 px" in small.why and "256 px" in small.why
    assert rows("mm-celeba-hq", "poegan", protocol={"resolution": 32})["seg/fid"].verdict == "not comparable"
    untrained = rows("mm-celeba-hq", "poegan", random={"fid": ["inception"]})["seg/fid"]
    assert untrained.verdict == "not comparable" and "random weights (inception)" in untrained.why
    assert rows("sample", "poegan")["seg/fid"].verdict == "not comparable"
    inade = rows("mm-celeba-hq", "inade", protocol={"reference": {"split": "test"}})["seg/fid"]
    assert inade.verdict == "not comparable" and "train split" in inade.why  # INADE's FID is against training images
    inade = rows("mm-celeba-hq", "inade", protocol={"reference": {"split": "train"}})["seg/seg_miou"]
    assert inade.verdict == "matched" and inade.paper == NUMBERS["inade-1", "seg", "seg_miou"] and "28,000" in inade.why
