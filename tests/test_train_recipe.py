"""What `pipeline train --dry-run` says of the recipe of every trained family on every real profile: steps, batch,
learning-rate schedule, initialisation, preprocessing and moving average, as docs/protocols.md lists them (the
command prints these lines: tests/test_train_spade.py)."""
import pytest
from test_train_cli import REPO_PARAMS

from pipeline.params import load_params
from train.models import REGISTRY, family
from train.recipe import recipe

REAL = ("coco", "mm-celeba-hq", "landscape")
TRAINED = [name for name in REGISTRY if family(name).fitted is None]  # cluster-guided is fitted, not trained
SPADE_FAMILY = ("spade-seg", "spade-sketch", "spade-seg-monce", "inade")


@pytest.mark.parametrize("dataset", REAL)
def test_every_real_profile_and_trained_family_has_a_recipe_or_a_refusal_naming_the_configurations(dataset):
    params = load_params(REPO_PARAMS).for_dataset(dataset)
    for model in TRAINED:
        fam, section = family(model), params.train.model(model)
        try:
            cfg = fam.configure(section.config or params.profile(dataset).train_config, section)
        except KeyError as e:  # the baselines' papers have no Landscape recipe (docs/protocols.md)
            assert dataset == "landscape" and model != "poegan" and "known:" in str(e), (dataset, model)
            continue
        steps, schedule, betas, init, preprocessing, ema = recipe(fam, cfg, section)
        batch = section.batch_size or cfg.batch_size
        assert steps == f"steps: {section.steps} at batch {batch} ({section.steps * batch} images)"
        assert ("decaying linearly" in schedule) == (model in SPADE_FAMILY[:3]), (dataset, model, schedule)
        assert betas.startswith("Adam betas: G (")
        if model in SPADE_FAMILY:  # the official loaders and init_weights (docs/protocols.md)
            assert "Xavier normal, gain 0.02" in init
            assert "resize-crop: whole image to 286x286, a random 256x256 crop (image bicubic" in preprocessing
            assert preprocessing.endswith("random horizontal flips")
        else:
            assert "Xavier" not in init and preprocessing.endswith("no flips")
        assert ("decay 0.9999 every step" in ema) == (model == "unite-conquer"), (dataset, model, ema)

