"""A short PoE-GAN run whose inputs depend only on each sample's place in the global batch, not on the rank that
holds it: `python ddp_run.py RUN_DIR STEPS` runs it in one process, `torchrun --nproc_per_node 2 ddp_run.py ...`
on two (gloo). Data, modality dropout and latent noise are fixed functions of (step, global row), so both runs
see the same global batches and any difference in their weights comes from the data-parallel code path.
Adam's eps is raised to 1e-4: some gradients are zero but for rounding (biases an instance norm removes), and
with eps = 1e-8 Adam's g / sqrt(v) turns that rounding, which differs between the two runs, into full steps."""
import functools
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import train.loop
import train.families.poegan.poe_nets
from shardio.modalities import MODEL_MODALITIES as MODALITIES
from train.families.poegan.configs import get_config
from train.models import family
from train.vgg import VGGRelu51

CFG = replace(get_config("tiny"), resolution=16, batch_size=4, channel_base=8, channel_max=32, latent_base=2,
              latent_max=8, kl_weights=get_config("coco-64").kl_weights)
CLASSES = 5


def _rows(local: int) -> torch.Tensor:
    """Global row indices of this rank's slice."""
    rank = int(os.environ.get("RANK", "0"))
    return torch.arange(rank * local, (rank + 1) * local)


class FixedBatches:
    """Stands in for ShardLoader: batch t is a function of t, sliced by rank."""

    def __init__(self, urls, resolution, num_classes, batch_size, **_):
        self.resolution, self.num_classes, self.local = resolution, num_classes, batch_size

    def __iter__(self):
        step, world = 0, int(os.environ.get("WORLD_SIZE", "1"))
        while True:
            g = torch.Generator().manual_seed(step)
            n, r = self.local * world, self.resolution
            labels = torch.randint(self.num_classes, (n, r, r), generator=g)
            full = {"image": torch.rand(n, 3, r, r, generator=g) * 2 - 1,
                    "seg": labels.to(torch.uint8),  # class ids, as the loader's (made one-hot on the device)
                    "sketch": torch.rand(n, 1, r, r, generator=g), "text": torch.randn(n, CFG.clip_dim, generator=g)}
            yield {k: v[_rows(self.local)] for k, v in full.items()}
            step += 1

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def fixed_masks(local: int, device) -> dict:
    """Modality dropout by a fixed pattern of the global row."""
    rows = _rows(local)
    return {m: ((rows + i) % 3 != 0).to(device) for i, m in enumerate(MODALITIES)}


def fixed_sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """mu + sigma * eps with eps a fixed function of the global row and the element."""
    rows = _rows(len(mu)).view(-1, *[1] * (mu.dim() - 1)).float()
    element = torch.arange(mu[0].numel(), dtype=torch.float32).view(mu.shape[1:])
    return mu + torch.exp(0.5 * logvar) * torch.sin(rows * 7.3 + element * 0.37 + 1.0)


def main(run_dir: str, steps: int) -> None:
    torch.set_num_threads(1)
    torch.optim.Adam = functools.partial(torch.optim.Adam, eps=1e-4)
    train.loop.ShardLoader = FixedBatches
    train.loop.modality_masks = fixed_masks
    train.families.poegan.poe_nets.sample = fixed_sample
    spec = train.loop.RunSpec(Path(run_dir), ["unused"], ["unused"], CLASSES, np.zeros((CLASSES, 3), np.uint8),
                              steps=steps, snapshot_every=steps, sample_every=steps, grid_size=2)
    train.loop.train(family("poegan"), CFG, VGGRelu51(None), spec, progress=False)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
