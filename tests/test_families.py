"""A model family is its folder, one registry line and its params section: a toy family registered that way is
in the params schema (taking train.defaults), in `pipeline train`'s choices, and trains a step in the real loop;
no other file of the repository names a registered family."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from train_shards import write_training_shards

from annotators.labelmaps import load_label_map
from pipeline.cli import main
from pipeline.params import ParamsError, load_params
from pipeline.params.train import train_sections
from train.checkpoint import load, snapshot_path
from train.families import REGISTRY, declaration
from train.loop import RunSpec, train
from train.models import family

LABELS = load_label_map("coco-stuff-182")
TOY = '''"""A toy family: an image from the sketch by a learned affine map, judged by a linear discriminator."""
from pydantic import Field

from train.families.base import Declaration, ModelTrainParams


class ToyParams(ModelTrainParams):
    """The loop's settings and one of its own."""

    scale: float = Field(1.0, gt=0)


def build():
    import torch
    from torch import nn

    from train.models import ModelFamily, OptimizerSettings, Stateless

    class Config:
        resolution, batch_size = 8, 2

    class Pixel(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3, 1, 1))

        def forward(self, cond, masks):
            return torch.tanh(cond["sketch"] * self.scale), None

    class Loss(Stateless):
        def __init__(self, G, D, vgg, cfg):
            self.G, self.D = G, D

        def accumulate_gradients(self, phase, batch, masks, backward):
            fake, _ = self.G(batch, masks)
            real = batch["image"] if phase.network == "D" else fake
            total = self.D((fake.detach() if phase.network == "D" else fake).flatten(1)).mean()
            total = total - self.D(real.flatten(1)).mean() if phase.network == "D" else total
            backward(total)
            return {f"{phase.name}_toy": total.detach()}

    return ModelFamily(config=lambda name: Config(), networks=lambda cfg, n: (Pixel(), nn.Linear(3 * 64, 1)),
                       loss=Loss, optimizer=lambda cfg: OptimizerSettings(0.01, 0.01, (0.0, 0.99), None),
                       uses_vgg=False)


TOY = Declaration(ToyParams, ("tiny",), build)
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy family's folder (a package outside the repository) and its one registry line."""
    (tmp_path / "toyfamily").mkdir()
    (tmp_path / "toyfamily" / "__init__.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(REGISTRY, "toy", "toyfamily:TOY")
    yield "toy"
    sys.modules.pop("toyfamily", None)


def test_a_registered_family_has_a_params_section_taking_the_defaults(toy):
    sections = train_sections()
    train_params = sections.model_validate({"defaults": {"steps": 7, "vgg_weights": "random"}, "toy": {"scale": 2.0}})
    section = train_params.model(toy)
    assert (section.steps, section.scale, section.workers) == (7, 2.0, 2)  # from defaults, its own, the loop's
    assert not hasattr(section, "vgg_weights")  # a default it does not declare is not given to it
    assert train_params.given()["toy"] == {"scale": 2.0}
    with pytest.raises(Exception, match="toy.scale"):
        sections.model_validate({"toy": {"scale": 0}})


def test_a_registered_family_trains_a_step_in_the_loop(toy, tmp_path):
    fam = family(toy)
    assert declaration(toy).configs == ("tiny",)
    urls = [str(p) for p in write_training_shards(tmp_path / "shards", images=4, per_shard=4, short_side=10)]
    spec = RunSpec(tmp_path / "run", urls, urls, LABELS.num_classes, LABELS.colours, steps=1, shuffle_buffer=4,
                   epoch_batches=2, snapshot_every=1, sample_every=1, grid_size=2)
    (record,) = train(fam, fam.config("tiny"), None, spec, progress=False)
    assert {"G_toy", "D_toy", "G_grad_norm", "D_grad_norm"} <= set(record)
    assert set(load(snapshot_path(spec.run_dir, 1))) == {"G", "D", "G_ema"}


def test_the_repository_params_give_each_family_the_defaults_it_does_not_set(tmp_path):
    raw = yaml.safe_load(open("params.yaml"))
    raw["train"]["defaults"]["seed"] = 3
    raw["train"]["inade"] = {"seed": 5}
    raw["datasets"]["sample"]["overrides"]["train.defaults.workers"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    sample = load_params(tmp_path / "params.yaml").for_dataset("sample").train
    assert (sample.poegan.seed, sample.inade.seed, sample.model("unite-conquer").seed) == (3, 5, 3)
    assert sample.poegan.workers == 1 and sample.poegan.steps == 60  # the sample's overrides of the defaults
    assert sample.model("cluster-guided").seed == 0  # fitted, no loop: it takes no loop settings
    raw["train"]["defaults"]["stpes"] = 1
    raw["train"]["spade-seg"] = {"lr_G": 0.1, "seeed": 1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError) as error:
        load_params(tmp_path / "params.yaml")
    assert "train.defaults.stpes: unknown key (did you mean 'steps'?)" in str(error.value)
    assert "train.spade-seg.seeed: unknown key (did you mean 'seed'?)" in str(error.value)
    assert "train.spade-seg.lr_G: unknown key" in str(error.value)


def test_train_lists_each_familys_configurations():
    result = CliRunner().invoke(main, ["train", "--help"], terminal_width=200)
    assert result.exit_code == 0
    listed = " ".join(result.output.split())
    assert "poegan: celeba-1024, celeba-256, coco-256, coco-64, landscape-1024, tiny" in listed
    assert "spade-seg-monce: coco-256, celeba-256, tiny" in listed


REPO = Path(__file__).resolve().parents[1]
WHERE_NAMED = ("train/families/__init__.py", "params.yaml")  # the registry line and the params section


@pytest.mark.skipif(not (REPO / ".git").exists() or shutil.which("git") is None, reason="needs a git checkout")
def test_no_file_outside_its_folder_tests_and_docs_names_a_family():
    """`git grep` of each family's name and folder name finds it only in the registry, params.yaml, its own folder,
    tests/, docs/, and the folder of a family that declares it is fitted from it (`ModelFamily.fitted.base`: such a
    family builds on the base's code, a dependency the declaration states)."""
    offending = {}
    for name, where in REGISTRY.items():
        folder = "train/families/" + where.split(":")[0].lstrip(".")
        fitted_on_it = ["train/families/" + REGISTRY[other].split(":")[0].lstrip(".") for other in REGISTRY
                        if getattr(family(other).fitted, "base", None) == name]
        excluded = [f":!{path}" for path in ("tests", "docs", folder, *fitted_on_it)]
        for word in {name, name.replace("-", "_")}:
            found = subprocess.run(["git", "grep", "-l", "-F", "-e", word, "--", ".", *excluded], cwd=REPO,
                                   capture_output=True, text=True).stdout.split()
            if set(found) - set(WHERE_NAMED):
                offending[word] = sorted(set(found) - set(WHERE_NAMED))
    assert not offending, f"files that name a family (read it from the registry or its declaration): {offending}"
