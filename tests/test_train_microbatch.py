"""Micro-batching (`batch_gpu`): a step's gradients are the mean over its accumulation rounds, so for a loss that
is a per-sample mean the trained weights do not depend on how the device's share is split."""
from dataclasses import replace

import pytest
import torch
from torch import nn
from train_shards import write_training_shards

from annotators.labelmaps import load_label_map
from train.checkpoint import load, snapshot_path, state_path
from train.families.poegan.configs import get_config
from train.loop import RunSpec, accumulation_rounds, train
from train.models import ModelFamily, OptimizerSettings, Stateless, family
from train.vgg import VGGRelu51

pytestmark = pytest.mark.usefixtures("one_thread")
LABELS = load_label_map("coco-stuff-182")


class PixelG(nn.Module):
    """An image from the sketch by a learned per-channel affine map (no noise, no batch coupling)."""

    def __init__(self):
        super().__init__()
        self.scale, self.shift = nn.Parameter(torch.ones(3, 1, 1)), nn.Parameter(torch.zeros(3, 1, 1))

    def forward(self, cond, masks):
        return torch.tanh(cond["sketch"] * self.scale + self.shift), None


class PerSampleLoss(Stateless):
    """G: squared distance of the generated to the real image; D: a linear score of real vs generated."""

    def __init__(self, G, D, vgg, cfg):
        self.G, self.D = G, D

    def accumulate_gradients(self, phase, batch, masks, backward):
        fake, _ = self.G(batch, masks)
        if phase.network == "G":
            total = (fake - batch["image"]).square().mean()
        else:
            total = (self.D(fake.detach().flatten(1)) - self.D(batch["image"].flatten(1))).mean()
        backward(total)
        return {f"{phase.name}_loss": total.detach()}


class Config:
    resolution, batch_size = 8, 4


FAMILY = ModelFamily(config=lambda name: Config(), networks=lambda cfg, n: (PixelG(), nn.Linear(3 * 64, 1)),
                     loss=PerSampleLoss, optimizer=lambda cfg: OptimizerSettings(0.01, 0.01, (0.0, 0.99), None))


def test_accumulation_rounds_split_each_devices_share():
    assert accumulation_rounds(768, 8, 24) == 4 and accumulation_rounds(8, 1, None) == 1
    with pytest.raises(ValueError, match="batch_gpu 5 does not divide the per-device batch 96"):
        accumulation_rounds(768, 8, 5)
    with pytest.raises(ValueError, match="batch_size 10 is not divisible by the 4 processes"):
        accumulation_rounds(10, 4, None)


def _runs(tmp_path, fam, cfg, vgg, batch_gpus) -> tuple[dict, dict]:
    """Run folders and logs of 3-step runs, one per `batch_gpu`, on the same shards."""
    urls = [str(p) for p in write_training_shards(tmp_path / "shards", images=8, per_shard=4, short_side=10)]
    runs, logs = {}, {}
    for batch_gpu in batch_gpus:
        spec = RunSpec(tmp_path / f"run{batch_gpu}", urls, urls, LABELS.num_classes, LABELS.colours, steps=3,
                       batch_gpu=batch_gpu, shuffle_buffer=4, epoch_batches=4, snapshot_every=3, sample_every=3,
                       grid_size=2)
        logs[batch_gpu] = train(fam, cfg, vgg, spec, progress=False)
        runs[batch_gpu] = spec.run_dir
    return runs, logs


def test_micro_batched_steps_train_the_same_weights_as_whole_batches(tmp_path):
    runs, logs = _runs(tmp_path, FAMILY, Config(), nn.Identity(), (4, 2, 1))
    weights = {batch_gpu: load(snapshot_path(run, 3)) for batch_gpu, run in runs.items()}
    for batch_gpu in (2, 1):
        for net in ("G", "D"):
            for key, value in weights[4][net].items():
                assert torch.allclose(weights[batch_gpu][net][key], value, atol=1e-6), (batch_gpu, net, key)
        for key in ("G_loss", "G_grad_norm", "D_grad_norm"):  # the mean over rounds, not their sum
            assert [r[key] for r in logs[batch_gpu]] == pytest.approx([r[key] for r in logs[4]], rel=1e-5), key


def test_poegan_kl_rebalancing_is_updated_once_per_step_whatever_the_rounds(tmp_path, monkeypatch):
    # Without latent noise and contrastive terms (their negatives are one round's samples), every PoE-GAN term is a
    # per-sample mean, so two rounds of 2 must train what one round of 4 trains, KL rebalancing weights included.
    monkeypatch.setattr("train.families.poegan.poe.randn_like", torch.zeros_like)
    cfg = replace(get_config("tiny"), resolution=16, batch_size=4, channel_base=8, channel_max=32, latent_base=2,
                  latent_max=8, kl_weights=get_config("coco-64").kl_weights, image_contrastive=0.0,
                  text_contrastive=0.0)
    runs, logs = _runs(tmp_path, family("poegan"), cfg, VGGRelu51(None), (4, 2))
    kl_weights = {b: load(state_path(run, 3))["loss"]["kl_balance"]["weights"] for b, run in runs.items()}
    assert torch.allclose(kl_weights[2], kl_weights[4], rtol=0, atol=1e-6)
    # Every logged loss term and gradient norm, step by step: the networks compute the same. (Their weights differ
    # where the gradient is zero up to round-off, e.g. a bias before a normalisation: Adam turns that noise into
    # steps of the learning rate that change no output.)
    for whole, rounds in zip(logs[4], logs[2], strict=True):
        for key, value in whole.items():
            if key not in ("sec", "data_sec", "images") and "contrastive" not in key:  # their weights are 0
                assert rounds[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (whole["step"], key)
