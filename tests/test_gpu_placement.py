"""Device placement on (fake) CUDA: every forward path that training, grids, evaluation and annotation run on a
GPU keeps its tensors on the GPU (see tests/fake_cuda.py; docs/gpu.md lists what only real hardware shows)."""
from dataclasses import replace

import pytest
import torch
from fake_cuda import CUDA, condition_batch, fake_cuda, on_cuda, on_device  # noqa: F401 (fixture)

from train.configs import get_config
from train.models import family
from train.samples import PATTERNS, generated_rows, render_grid

NUM_CLASSES = 5
POEGAN = replace(get_config("tiny"), resolution=16, channel_base=8, channel_max=32, latent_base=2, latent_max=8)
# family() imports the model modules here, outside fake mode: their module-level constants stay real tensors
FAMILIES = {"poegan": (family("poegan"), POEGAN), "spade-seg": (family("spade-seg"), family("spade-seg").config("tiny")),
            "spade-sketch": (family("spade-sketch"), family("spade-sketch").config("tiny"))}


def _networks(name):
    fam, cfg = FAMILIES[name]
    with on_cuda():
        G, D = fam.networks(cfg, NUM_CLASSES)
    return cfg, G, D


@pytest.mark.parametrize("name", FAMILIES)
def test_sample_grid_generation_stays_on_the_gpu(fake_cuda, name):
    cfg, G, _ = _networks(name)
    rows = generated_rows(G.eval(), condition_batch(NUM_CLASSES, getattr(cfg, "clip_dim", 8), cfg.resolution))
    assert len(rows) == len(PATTERNS) and on_device(rows)


def test_sample_grid_leaves_every_training_rng_alone(monkeypatch):
    fam, cfg = FAMILIES["poegan"]
    G, _ = fam.networks(cfg, NUM_CLASSES)
    conds = [condition_batch(NUM_CLASSES, cfg.clip_dim, cfg.resolution, device="cpu") for _ in range(2)]
    colours = torch.zeros(NUM_CLASSES, 3, dtype=torch.uint8).numpy()
    seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", seeded.append)  # what torch.manual_seed does to CUDA
    before = torch.get_rng_state()
    grids = [render_grid(G.eval(), cond, colours) for cond in conds]
    assert seeded == [] and torch.equal(torch.get_rng_state(), before)
    assert (grids[0] != grids[1]).any()
