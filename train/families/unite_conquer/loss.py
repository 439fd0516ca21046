"""The training objective of the experts: each expert's hybrid loss (epsilon MSE + variational bound, ADM's
LEARNED_RANGE with loss type MSE) on its own uniformly drawn timesteps and noise, with its condition dropped to null
for the official fraction of samples (config.NULL_FRACTION). One phase "G" trains all experts: no parameter is
shared, so each trains as if alone (Adam is per parameter; ADM clips no gradient). Each expert's loss is
backpropagated before the next one's forward, so only one expert's activations are alive at a time."""
import torch

from ...models import GENERATOR_PHASE, Phase, Stateless
from .config import NULL_FRACTION
from .experts import Experts

PHASES = (GENERATOR_PHASE,)


class ExpertsLoss(Stateless):
    """The loss object the training loop drives (train/loop.py) in its one phase, G. The loop's modality masks
    (PoE-GAN's dropout) are not used: each expert drops its own condition."""

    def __init__(self, G: Experts, vgg=None, cfg=None):
        self.G, self.cfg = G, cfg or G.cfg

    def accumulate_gradients(self, phase: Phase, batch: dict, masks: dict, backward) -> dict[str, torch.Tensor]:
        """Hand each expert's hybrid loss to `backward` in turn; return each one's MSE and VLB terms."""
        x0 = batch["image"]
        diffusion, terms = self.G.diffusion, {}
        for name in self.G.experts:
            t = torch.randint(0, diffusion.timesteps, (len(x0),), device=x0.device)
            noise = torch.randn_like(x0)
            keep = torch.rand(len(x0), device=x0.device) >= NULL_FRACTION[name]
            xt = diffusion.q_sample(x0, t, noise)
            mse, vb = diffusion.hybrid_loss(self.G.expert(name, xt, t, batch, keep, train=True), x0, xt, t, noise)
            backward(mse.mean() + vb.mean())
            terms[f"{name}_mse"], terms[f"{name}_vb"] = mse.mean().detach(), vb.mean().detach()
        return terms
