"""CLIP annotator: float16 L2-normalised image and caption embeddings, batch-size invariance, determinism, weights
from a file path, the 'random' choice recorded in the metadata."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from annotators.base import Item, build, encode
from annotators.clip import check_pretrained_pair
from annotators.weights import WeightsError
from pipeline.params.annotate import ClipParams

pytestmark = pytest.mark.usefixtures("one_thread")  # the shared machine's cores are busy; two threads only wait

MODEL = "ViT-S-32"  # small and quick to build; the code path is the same for every open_clip model
DIM = 384


def images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    annotator = build("clip", ClipParams(model=MODEL, weights="random"), tmp_path_factory.mktemp("w"))
    annotator.setup("cpu")
    return annotator


def test_embeddings_are_float16_unit_vectors_with_one_row_per_caption(clip):
    out = clip([Item(images([(40, 60)])[0], ["a red barn", "hills under a blue sky"]),
                Item(images([(30, 30)], seed=1)[0])])
    assert out[0]["clip.npy"].shape == (DIM,) and out[0]["clip.npy"].dtype == np.float16
    assert out[0]["clip_text.npy"].shape == (2, DIM) and out[0]["clip_text.npy"].dtype == np.float16
    assert "clip_text.npy" not in out[1]
    norms = np.linalg.norm(np.vstack([out[0]["clip.npy"], out[0]["clip_text.npy"], out[1]["clip.npy"]]).astype(
        np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)
    assert np.load(__import__("io").BytesIO(encode("clip_text.npy", out[0]["clip_text.npy"])),
                   allow_pickle=False).shape == (2, DIM)


def batched(annotator, items, batch_size):
    """The annotator's outputs for `items` handed over `batch_size` at a time, as shard member bytes."""
    outputs = [out for start in range(0, len(items), batch_size) for out in annotator(items[start:start + batch_size])]
    return [{key: encode(key, array) for key, array in out.items()} for out in outputs]


def test_bytes_are_the_same_for_every_batch_size(clip):
    sizes = [(40, 60), (60, 40), (33, 33), (64, 64), (20, 90), (40, 60), (50, 50), (41, 59), (30, 70)]
    items = [Item(image, [f"caption {i}"] * (i % 3)) for i, image in enumerate(images(sizes))]
    whole = batched(clip, items, len(items))  # more than one micro-batch of 8
    for batch_size in (1, 3, 8):
        assert batched(clip, items, batch_size) == whole, f"batch size {batch_size}"


def test_same_caption_gives_the_same_text_embedding(clip):
    out = clip([Item(images([(32, 32)])[0], ["a lake"]), Item(images([(32, 32)], seed=2)[0], ["x", "a lake"])])
    assert out[0]["clip_text.npy"][0].tobytes() == out[1]["clip_text.npy"][1].tobytes()
    assert clip([Item(images([(32, 32)])[0], ["a lake"])])[0]["clip_text.npy"].tobytes() == \
        out[0]["clip_text.npy"].tobytes()


def test_weights_from_a_file_are_loaded_and_hashed(clip, tmp_path):
    state = {k: v.clone() for k, v in clip.net.state_dict().items()}
    state["visual.proj"] = torch.flip(state["visual.proj"], dims=[1])
    torch.save(state, tmp_path / "clip.pt")
    loaded = build("clip", ClipParams(model=MODEL, weights=str(tmp_path / "clip.pt")), tmp_path)
    loaded.setup("cpu")
    image = images([(40, 40)])[0]
    np.testing.assert_allclose(loaded([Item(image)])[0]["clip.npy"].astype(np.float32),
                               clip([Item(image)])[0]["clip.npy"][::-1].astype(np.float32), atol=2e-3)
    meta = loaded.metadata()
    assert meta["model"] == MODEL and len(meta["sha256"]) == 64 and meta["pretrained"] == str(tmp_path / "clip.pt")


def test_random_weights_are_recorded_and_a_missing_file_is_an_error(clip, tmp_path):
    assert clip.metadata() == {"model": MODEL, "pretrained": "random", "weights": "random", "sha256": "random"}
    with pytest.raises(WeightsError, match="annotate.clip.weights"):
        build("clip", ClipParams(model=MODEL, weights=str(tmp_path / "nope.pt")), tmp_path).setup("cpu")


def test_default_is_openais_vit_b_32_with_the_activation_it_was_trained_with(tmp_path):
    params = ClipParams()
    assert (params.model, params.pretrained, params.weights) == ("ViT-B-32-quickgelu", "openai", "open_clip")
    build("clip", params, tmp_path)  # checks the pair without downloading anything


@pytest.mark.parametrize("model, pretrained, message", [
    ("ViT-B-32", "openai", "trained with QuickGELU but model 'ViT-B-32' uses GELU.*use model 'ViT-B-32-quickgelu'"),
    ("ViT-B-32-quickgelu", "laion2b_s34b_b79k", "no pretrained 'laion2b_s34b_b79k' for model 'ViT-B-32-quickgelu'"),
    ("ViT-B-32", "no-such-tag", "tags for that model: .*laion2b_s34b_b79k"),
])
def test_a_pair_whose_activation_or_tag_does_not_match_is_refused_before_any_download(tmp_path, model, pretrained,
                                                                                      message):
    with pytest.raises(WeightsError, match=message):
        build("clip", ClipParams(model=model, pretrained=pretrained), tmp_path)


def test_the_readmes_clip_experiment_names_a_real_pair():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    models = re.findall(r"annotate\.clip\.model=(\S+)", readme)
    assert models
    for model in models:
        check_pretrained_pair(model, ClipParams().pretrained)


def hub_cache_file(weights_dir, repo, filename, content=b"checkpoint bytes"):
    """A file where huggingface_hub (hence open_clip) caches `repo`'s `filename` under <weights_dir>/open_clip."""
    folder = weights_dir / "open_clip" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs/main").write_text("0123abcd")
    path = folder / "snapshots/0123abcd" / filename
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


def test_weights_list_and_fetch_needed_include_the_clip_checkpoint(tmp_path):
    import json

    import yaml
    from click.testing import CliRunner

    from annotators.weights import sha256_of
    from pipeline.cli import main

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["datasets"]["landscape"]["annotate"] = ["clip"]  # so --needed names CLIP's checkpoint alone
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = ["--dataset", "landscape", "--params", str(tmp_path / "params.yaml"), "--data-dir", str(tmp_path)]
    listed = CliRunner().invoke(main, ["weights", "list", *args])
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.output.splitlines() if line.startswith("open_clip:"))
    assert "open_clip:ViT-B-32-quickgelu/openai" in line and "missing" in line
    assert "timm/vit_base_patch32_clip_224.openai" in line and "MIT (openai/CLIP)" in listed.output
    assert str(tmp_path / "weights/open_clip") in listed.output
    cached = hub_cache_file(tmp_path / "weights", "timm/vit_base_patch32_clip_224.openai",
                            "open_clip_model.safetensors")
    listed = CliRunner().invoke(main, ["weights", "list", *args])
    assert "cached" in listed.output.split("open_clip:")[1] and f"file: {cached}" in listed.output
    fetched = CliRunner().invoke(main, ["weights", "fetch", "--needed", "--record", str(tmp_path / "needed.json"),
                                        *args])
    assert fetched.exit_code == 0, fetched.output
    assert json.loads((tmp_path / "needed.json").read_text()) == {
        "open_clip:ViT-B-32-quickgelu/openai": sha256_of(cached)}
