"""Params validation: the shipped file is valid; every mistake is reported with its full key path."""
from pathlib import Path

import pytest
import yaml

from click.testing import CliRunner

from pipeline.cli import main
from pipeline.params import ParamsError, load_params

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def write_params(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def rejection(tmp_path, edit) -> str:
    with pytest.raises(ParamsError) as err:
        load_params(write_params(tmp_path, edit))
    return str(err.value)


def test_shipped_params_are_valid_with_every_profile():
    params = load_params(REPO_PARAMS)
    assert set(params.datasets) >= {"sample", "landscape", "coco", "mm-celeba-hq"}
    assert params.dataset == "sample"
    assert params.profile("landscape").test_size == 50_000
    assert params.profile("landscape").text == "image"
    for name in params.datasets:
        params.for_dataset(name)


def test_misspelled_key_is_named_with_its_path_and_a_suggestion(tmp_path):
    def edit(raw):
        raw["annotate"]["clip"]["modle"] = raw["annotate"]["clip"].pop("model")

    message = rejection(tmp_path, edit)
    assert "annotate.clip.modle: unknown key" in message
    assert "did you mean 'model'" in message


def test_misspelled_key_inside_a_dataset_profile(tmp_path):
    message = rejection(tmp_path, lambda raw: raw["datasets"]["coco"].update(tset_size=3))
    assert "datasets.coco.tset_size: unknown key" in message


def test_wrong_type_names_the_key_and_the_value(tmp_path):
    message = rejection(tmp_path, lambda raw: raw["ingest"].update(shard_size="lots"))
    assert "ingest.shard_size" in message and "'lots'" in message


def test_numbers_are_not_parsed_from_strings(tmp_path):
    message = rejection(tmp_path, lambda raw: raw["annotate"]["seg"].update(batch_size="8"))
    assert "annotate.seg.batch_size" in message


def test_out_of_range_value_is_rejected(tmp_path):
    message = rejection(tmp_path, lambda raw: raw["ingest"].update(jpeg_quality=101))
    assert "ingest.jpeg_quality" in message and "less than or equal to 100" in message


def test_all_problems_are_reported_at_once(tmp_path):
    def edit(raw):
        raw["ingest"]["jpeg_quality"] = 0
        raw["sample"]["seed"] = "zero"

    message = rejection(tmp_path, edit)
    assert "2 invalid param(s)" in message
    assert "ingest.jpeg_quality" in message and "sample.seed" in message


def test_default_dataset_must_be_a_profile(tmp_path):
    message = rejection(tmp_path, lambda raw: raw.update(dataset="imagenet"))
    assert "'imagenet' is not a profile" in message
    assert len(message) < 300 and "jpeg_quality" not in message, message  # not the whole params dictionary


def test_a_stage_param_a_profile_overrides_is_said_to_change_nothing(tmp_path):
    def edited(raw):
        raw["annotate"]["sketch"]["resolution"] = 128  # the sample profile overrides it with 256

    result = CliRunner().invoke(main, ["where", "--params", str(write_params(tmp_path, edited))])
    assert result.exit_code == 0
    assert ("warning: " in result.output and "annotate.sketch.resolution is 128 in the params file, but dataset "
            "'sample' overrides it with 256" in result.output), result.output
    assert "warning" not in CliRunner().invoke(main, ["where", "--params", str(REPO_PARAMS)]).output
    assert load_params(write_params(tmp_path, edited)).shadowed("landscape") == []  # no override there


def test_unknown_dataset_lists_the_profiles():
    with pytest.raises(ParamsError, match="unknown dataset 'imagenet'.*coco"):
        load_params(REPO_PARAMS).profile("imagenet")


def test_unknown_source_kind_is_rejected(tmp_path):
    message = rejection(tmp_path, lambda raw: raw["datasets"]["landscape"]["source"].update(kind="s3"))
    assert "datasets.landscape.source.kind" in message


def test_overrides_apply_to_their_dataset_only():
    params = load_params(REPO_PARAMS)
    assert params.for_dataset("sample").annotate.seg.weights == "random"
    assert params.for_dataset("landscape").annotate.seg.weights == params.annotate.seg.weights != "random"


def test_real_profiles_preprocess_and_train_as_the_supplement_says():
    params = load_params(REPO_PARAMS)
    # A: COCO, CelebA resized; Landscape randomly cropped
    for model in ("poegan", "unite-conquer"):
        fits = {name: params.for_dataset(name).train.model(model).fit for name in ("coco", "mm-celeba-hq", "landscape")}
        assert fits == {"coco": "resize", "mm-celeba-hq": "resize", "landscape": "random-crop"}
    # the SPADE family's official loaders: resize to 286, random 256 crop, flips (docs/protocols.md)
    for model in ("spade-seg", "spade-sketch", "spade-seg-monce", "inade"):
        for name in ("coco", "mm-celeba-hq"):
            section = params.for_dataset(name).train.model(model)
            assert (section.fit, section.flip) == ("resize-crop", True)
    assert not any(params.for_dataset(name).train.poegan.flip for name in params.datasets)  # B names no flips
    # Table 4 scale: hundreds of thousands of steps for the real profiles, a short run for the sample
    assert all(params.for_dataset(n).train.poegan.steps > 500_000 for n in ("coco", "mm-celeba-hq", "landscape"))
    assert params.for_dataset("sample").train.poegan.steps <= 100


def test_override_of_an_unknown_or_mistyped_param_is_rejected(tmp_path):
    def misspelled(raw):
        raw["datasets"]["sample"]["overrides"] = {"annotate.seg.wieghts": "random"}

    assert "datasets.sample.overrides: annotate.seg.wieghts: unknown key" in rejection(tmp_path, misspelled)

    def mistyped(raw):
        raw["datasets"]["sample"]["overrides"] = {"ingest.min_size": "tiny"}

    assert "datasets.sample.overrides: ingest.min_size" in rejection(tmp_path, mistyped)

    def nowhere(raw):
        raw["datasets"]["sample"]["overrides"] = {"datasets.coco.test_size": 1}

    assert "names no stage param" in rejection(tmp_path, nowhere)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(bad)


# training images of the real profiles (COCO-Stuff train2017; CelebAMask-HQ's 30,000 less the 6,000 test images)
TRAIN_IMAGES = {"coco": 118_287, "mm-celeba-hq": 24_000}
# the official recipes' epochs (docs/protocols.md; MoNCE's: tests/test_train_monce.py); unite-conquer's length is in
# iterations, not epochs
EPOCHS = {("spade-seg", "coco"): 100, ("spade-seg", "mm-celeba-hq"): 60, ("inade", "coco"): 50,
          ("inade", "mm-celeba-hq"): 50}


def test_baselines_train_as_long_as_their_official_recipes_on_the_real_profiles():
    from train.models import family

    params = load_params(REPO_PARAMS)
    for (model, dataset), epochs in EPOCHS.items():
        profile = params.for_dataset(dataset)
        batch = family(model).config(profile.profile(dataset).train_config).batch_size
        steps = profile.train.model(model).steps
        assert steps == epochs * (TRAIN_IMAGES[dataset] // batch), (model, dataset)  # drop_last, as the official
    assert all(params.for_dataset(d).train.model("unite-conquer").steps == 100_000 for d in TRAIN_IMAGES)
    assert params.for_dataset("coco").train.spade_sketch.steps == params.for_dataset("coco").train.spade_seg.steps


def test_a_decay_starting_after_the_run_is_rejected(tmp_path):
    message = rejection(tmp_path, lambda raw: raw["train"]["inade"].update(steps=10, lr_decay_start=11))
    assert "train.inade" in message and "lr_decay_start 11 is after steps 10" in message


def test_a_modality_no_annotator_makes_is_rejected_with_the_known_ones(tmp_path):
    message = rejection(tmp_path, lambda raw: raw["pack"].update(modalities=["seg", "depth"]))
    assert "pack.modalities.1" in message and "'seg', 'sketch' or 'clip'" in message
    message = rejection(tmp_path, lambda raw: raw["datasets"]["sample"].update(annotate=["depth"]))
    assert "datasets.sample.annotate.0" in message and "'seg', 'sketch' or 'clip'" in message


@pytest.mark.parametrize("command", ["train", "evaluate", "generate"])
def test_an_unknown_configuration_is_a_usage_error_before_any_work(command, tmp_path):
    params = write_params(tmp_path, lambda raw: raw["datasets"]["sample"].update(train_config="huge"))
    result = CliRunner().invoke(main, [command, "--dataset", "sample", "--params", str(params),
                                       "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2 and "unknown PoE-GAN config 'huge'; known:" in result.output, result.output
    assert not (tmp_path / "data").exists()


def test_an_unknown_metric_stops_evaluate_and_no_data_stage(tmp_path):
    params = write_params(tmp_path, lambda raw: raw["evaluate"].update(metrics=["fid", "miou"]))
    common = ["--dataset", "sample", "--params", str(params), "--data-dir", str(tmp_path / "data")]
    result = CliRunner().invoke(main, ["evaluate", *common])
    assert result.exit_code == 2 and "evaluate.metrics: unknown metric 'miou'; known: fid" in result.output
    assert not (tmp_path / "data").exists()
    assert CliRunner().invoke(main, ["where", *common]).exit_code == 0  # the data stages do not read it
