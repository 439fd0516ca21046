"""`pipeline generate` on a tiny PoE-GAN run (two steps on shards written here, their CLIP a random ViT-S-32):
each modality alone and all together, byte-identical per seed, changing with the condition; the clear refusals."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image
from train_shards import drawn_sample, write_training_shards

from pipeline.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
CLIP = {"model": "ViT-S-32", "pretrained": "random", "weights": "random", "sha256": "random"}  # as annotate records
CLIP_DIM = 384  # ViT-S-32's embedding width


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(command prefix, condition files) of a tiny PoE-GAN trained two steps on the sample profile's params."""
    root = tmp_path_factory.mktemp("generate")
    data = root / "data"
    write_training_shards(data / "sample" / "shards", images=4, per_shard=4, short_side=36, clip_dim=CLIP_DIM,
                          annotators={"clip": CLIP})
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    raw["train"]["poegan"].update(batch_size=2, workers=0, snapshot_every=2, sample_every=2, steps=2)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    prefix = ("generate", "--params", root / "params.yaml", "--data-dir", data, "--dataset", "sample")
    result = run("train", *prefix[1:], "--steps", 2)
    assert result.exit_code == 0, result.output
    files = root / "inputs"
    files.mkdir()
    for index in (0, 1):
        rgb, labels, strokes, _ = drawn_sample(index, 48, seed=5)
        Image.fromarray(labels).save(files / f"seg{index}.png")
        Image.fromarray(255 - strokes).save(files / f"sketch{index}.png")  # a drawing: dark lines on white
        Image.fromarray(rgb).save(files / f"style{index}.jpg", quality=95)
    return prefix, files


def generate(trained, out: Path, *args, expect_ok: bool = True):
    prefix, _ = trained
    result = run(*prefix, "--out", out, "--n", 2, *args)
    if expect_ok:
        assert result.exit_code == 0, result.output
    return result


def pngs(out: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(out.glob("image-*.png"))]


def conditions(files: Path, index: int = 0) -> dict[str, list]:
    return {"text": ["--text", ["snowy peaks above a lake", "a red desert at dusk"][index]],
            "seg": ["--seg", files / f"seg{index}.png"], "sketch": ["--sketch", files / f"sketch{index}.png"],
            "style": ["--style", files / f"style{index}.jpg"]}


@pytest.mark.parametrize("given", [(), ("text",), ("seg",), ("sketch",), ("style",),
                                   ("text", "seg", "sketch", "style")])
def test_generates_from_each_modality_alone_and_from_all_with_a_record_of_what_made_them(trained, tmp_path, given):
    files = trained[1]
    args = [a for m in given for a in conditions(files)[m]]
    generate(trained, tmp_path / "a", *args)
    images = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "a").glob("image-*.png"))]
    assert len(images) == 2 and all(i.shape == (32, 32, 3) and i.dtype == np.uint8 for i in images)
    record = json.loads((tmp_path / "a" / "generate.json").read_text())
    assert record["modalities"] == list(given) and set(record["inputs"]) == set(given)
    assert record["snapshot"]["file"] == "network-snapshot-000002.pt" and record["seed"] == 0
    assert [i["file"] for i in record["images"]] == ["image-0000.png", "image-0001.png"]
    if "text" in given:
        assert record["inputs"]["text"]["clip"] == CLIP
    if "seg" in given:
        assert record["inputs"]["seg"]["label_map"] == "coco-stuff-182"
        assert len(record["inputs"]["seg"]["sha256"]) == 64


def test_same_seed_same_bytes_other_seed_or_condition_other_images(trained, tmp_path):
    files = trained[1]
    base, other = conditions(files), conditions(files, index=1)
    every = [a for args in base.values() for a in args]
    generate(trained, tmp_path / "first", *every, "--seed", 3)
    generate(trained, tmp_path / "again", *every, "--seed", 3)
    first = pngs(tmp_path / "first")
    assert first == pngs(tmp_path / "again") and first[0] != first[1]  # two draws differ from each other
    assert (tmp_path / "first" / "generate.json").read_bytes() == (tmp_path / "again" / "generate.json").read_bytes()
    generate(trained, tmp_path / "text", *other["text"], *every[2:], "--seed", 3)
    assert not set(pngs(tmp_path / "text")) & set(first), "changing --text changed nothing"

    images = [a for m in ("seg", "sketch", "style") for a in base[m]]  # the rest without building CLIP each time
    generate(trained, tmp_path / "images", *images, "--seed", 3)
    reference = set(pngs(tmp_path / "images"))
    generate(trained, tmp_path / "seed", *images, "--seed", 4)
    assert not set(pngs(tmp_path / "seed")) & reference, "changing --seed changed nothing"
    for name in ("seg", "sketch", "style"):
        changed = [a for m in ("seg", "sketch", "style") for a in (other if m == name else base)[m]]
        generate(trained, tmp_path / name, *changed, "--seed", 3)
        assert not set(pngs(tmp_path / name)) & reference, f"changing --{name} changed nothing"


def test_bad_inputs_are_refused_with_what_is_wrong_before_any_output(trained, tmp_path, caplog):
    files = trained[1]
    out = tmp_path / "out"
    labels = np.asarray(Image.open(files / "seg0.png")).copy()
    labels[:2, :2], labels[-1, -1] = 200, 190
    Image.fromarray(labels).save(tmp_path / "bad-seg.png")
    result = generate(trained, out, "--seg", tmp_path / "bad-seg.png", expect_ok=False)
    assert result.exit_code == 1 and "bad-seg.png" in result.output and "[190, 200]" in result.output
    result = generate(trained, out, "--text", "  ", expect_ok=False)
    assert result.exit_code == 1 and "--text is empty" in result.output
    (tmp_path / "not-an-image.png").write_bytes(b"plain text")
    result = generate(trained, out, "--style", tmp_path / "not-an-image.png", expect_ok=False)
    assert result.exit_code == 1 and "not-an-image.png" in result.output and "not_an_image" in result.output
    result = generate(trained, out, "--model", "spade-seg", "--seg", files / "seg0.png", expect_ok=False)
    assert result.exit_code == 1 and "no network-snapshot-*.pt" in result.output
    assert "pipeline train --dataset sample --model spade-seg" in result.output
    result = generate(trained, out, "--model", "spade-seg", "--text", "a lake", expect_ok=False)
    assert result.exit_code == 1 and "does not take text; it takes seg, style" in result.output
    result = generate(trained, out, "--model", "spade-seg", expect_ok=False)
    assert result.exit_code == 1 and "it needs seg" in result.output
    prefix, _ = trained
    bare = tmp_path / "bare"  # shards whose json records no CLIP model, beside the same run
    write_training_shards(bare / "sample" / "shards", images=4, per_shard=4, short_side=36, clip_dim=CLIP_DIM)
    shutil.copytree(Path(prefix[4]) / "runs", bare / "runs")
    result = run(*prefix[:4], bare, *prefix[5:], "--out", out, "--text", "a lake")
    assert result.exit_code == 1 and "record no CLIP model" in result.output
    assert not out.exists()

    # a sketch of another size than the segmentation is resized to it, with a warning
    Image.open(files / "sketch0.png").resize((40, 30)).save(tmp_path / "small-sketch.png")
    generate(trained, out, "--seg", files / "seg0.png", "--sketch", tmp_path / "small-sketch.png")
    assert "small-sketch.png is 40x30 but --seg is" in caplog.text and "sketch resized to" in caplog.text
    assert len(pngs(out)) == 2


# Each family besides PoE-GAN: the modalities it takes, and settings that keep its run to seconds
OTHER_FAMILIES = {
    "inade": (("seg",), {"batch_size": 2, "workers": 0, "snapshot_every": 2, "sample_every": 2}),
    "unite-conquer": (("text", "seg", "sketch"), {"batch_size": 2, "workers": 0, "snapshot_every": 2,
                                                  "sample_every": 2, "sample_steps": 2}),
    "cluster-guided": ((), {"codes": 40, "kmeans_inits": 1, "rounds": 2, "steps_per_round": 5,
                            "consistency_samples": 20, "batch_size": 20, "grid_size": 2}),  # fits on the PoE-GAN run
}


@pytest.mark.slow  # trains each family briefly
@pytest.mark.parametrize("model", OTHER_FAMILIES)
def test_every_other_family_generates_from_each_modality_it_takes_and_from_all_of_them(trained, tmp_path, model):
    (_, _, params, _, data, *_), files = trained
    takes, settings = OTHER_FAMILIES[model]
    raw = yaml.safe_load(Path(params).read_text())
    raw["train"][model].update(settings)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    prefix = ("--params", tmp_path / "params.yaml", "--data-dir", data, "--dataset", "sample", "--model", model)
    result = run("train", *prefix, *(("--steps", 2) if model != "cluster-guided" else ()))
    assert result.exit_code == 0, result.output
    subsets = [(m,) for m in takes] + ([takes] if len(takes) > 1 else []) + ([] if model == "inade" else [()])
    for given in subsets:
        args = [a for m in given for a in conditions(files)[m]]
        outs = [tmp_path / f"{'+'.join(given) or 'none'}-{i}" for i in (0, 1)]
        for out in outs:
            result = run("generate", *prefix, "--out", out, "--n", 2, *args)
            assert result.exit_code == 0, (given, result.output)
        images = [np.asarray(Image.open(p)) for p in sorted(outs[0].glob("image-*.png"))]
        assert len(images) == 2 and all(i.shape == (32, 32, 3) for i in images), given
        assert pngs(outs[0]) == pngs(outs[1]), given  # the same seed, the same bytes
