"""`pipeline preview`: a picture of random training samples, and the pieces it is drawn from."""
import io

import numpy as np
import yaml
from click.testing import CliRunner
from PIL import Image

from browse_fixtures import packed_landscapes
from image_shards import write_annotations, write_image_shards
from pipeline.cli import main
from shardio.layout import Layout
from pipeline.preview import caption_bank, caption_for, panel_titles, pick_samples
from shardio.shards import read_shard


def _packed(tmp_path) -> tuple[Layout, list[str], list[str]]:
    layout = Layout(tmp_path / "data", "sample")
    keys = write_image_shards(layout, [4, 4, 2])
    for name in ("seg", "sketch", "clip"):
        write_annotations(layout, name)
    params = tmp_path / "params.yaml"
    values = yaml.safe_load(open("params.yaml"))
    values["pack"]["workers"] = 1
    params.write_text(yaml.safe_dump(values))
    args = ["--dataset", "sample", "--params", str(params), "--data-dir", str(layout.data_dir)]
    assert CliRunner().invoke(main, ["pack", *args, "--no-progress"]).exit_code == 0
    return layout, keys, args


def test_preview_draws_a_png_of_the_requested_rows(tmp_path):
    layout, keys, args = _packed(tmp_path)
    result = CliRunner().invoke(main, ["preview", *args, "--samples", "3"])
    assert result.exit_code == 0, result.output
    assert "3 sample(s)" in result.output
    first = layout.preview.read_bytes()
    picture = Image.open(layout.preview)
    assert picture.format == "PNG" and picture.width > 600 and picture.height > 3 * 100
    assert CliRunner().invoke(main, ["preview", *args, "--samples", "3"]).exit_code == 0
    assert layout.preview.read_bytes() == first  # same seed, same data: the same picture


def test_samples_are_drawn_by_seed_and_uncaptioned_ones_get_the_nearest_caption(tmp_path):
    layout, keys, _ = _packed(tmp_path)
    picked = [key for key, _ in pick_samples(layout, 5, seed=0)]
    assert len(set(picked)) == 5 and set(picked) <= set(keys)
    assert picked == sorted(picked, key=keys.index)
    assert [key for key, _ in pick_samples(layout, 5, seed=1)] != picked
    assert len(pick_samples(layout, 50, seed=0)) == len(keys)
    bank = caption_bank(layout)
    assert len(bank[0]) == 2 * 4 and bank[1].shape == (8, 8)  # samples 0, 3, 6, 9 have two captions each
    samples = dict(pick_samples(layout, 50, seed=0))
    assert caption_for(samples[keys[3]], bank) == "a picture number 3"


def test_an_uncaptioned_sample_gets_the_caption_of_highest_cosine_similarity(tmp_path):
    layout, keys, _ = _packed(tmp_path)
    captions, vectors, samples = [], [], {}
    for shard in sorted(layout.shards.glob("*.tar")):
        for key, sample in read_shard(shard):
            samples[key] = sample
            if "txt" in sample:
                captions += sample["txt"].decode().splitlines()
                vectors += list(np.load(io.BytesIO(sample["clip_text.npy"]), allow_pickle=False).astype(np.float64))
    bank = caption_bank(layout)
    picked = set()
    for key in keys:
        if "txt" in samples[key]:
            continue
        image = np.load(io.BytesIO(samples[key]["clip.npy"]), allow_pickle=False).astype(np.float64)
        cosines = [v @ image / np.linalg.norm(v) / np.linalg.norm(image) for v in vectors]
        best = int(np.argmax(cosines))
        assert caption_for(samples[key], bank) == f"nearest caption (cos {cosines[best]:.2f}): {captions[best]}"
        picked.add(best)
    assert len(picked) > 1  # not one caption for every image


def test_preview_without_pack_says_what_to_run(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(yaml.safe_load(open("params.yaml"))))
    result = CliRunner().invoke(main, ["preview", "--dataset", "sample", "--params", str(params),
                                       "--data-dir", str(tmp_path / "data")])
    assert result.exit_code != 0 and "pipeline pack" in result.output


def test_panels_made_with_random_weights_say_so(tmp_path):
    layout, keys, args = packed_landscapes(tmp_path, short_side=48)
    for key, sample in pick_samples(layout, 8, seed=0):
        titles = panel_titles(sample)
        random_seg = keys.index(key) % 2 == 1  # the others carry the dataset's own segmentation
        assert titles["segmentation"] == (("segmentation (RANDOM weights: seg)", "red") if random_seg
                                          else ("segmentation", "black"))
        assert titles["sketch"] == ("sketch", "black")  # real HED weights
        assert titles["caption"] == ("caption (RANDOM weights: clip)", "red")
    assert CliRunner().invoke(main, ["preview", *args, "--samples", "4"]).exit_code == 0
