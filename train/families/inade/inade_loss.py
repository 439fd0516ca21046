"""The INADE objective: SPADE's (train/families/spade/spade_loss.py) with the settings tzt101/INADE
models/pix2pix_model.py and models/networks/loss.py use when the noise path is on: feature matching on the last
intermediate discriminator layer only (`j >= 3` of 4), VGG-19 L1 weights (0, 0, 0, 1/4, 1), and the KL of the
scale and the bias noise averaged and summed over the batch (KLDLoss's torch.sum). The weights (10, 10, 0.05) are
the configuration's (supplement Eq. 5)."""
import torch

from ..spade.spade_loss import SPADELoss, feature_matching, kl_divergence, perceptual

VGG_WEIGHTS = (0.0, 0.0, 0.0, 1 / 4, 1.0)  # VGGLoss(isNoise=True): relu4_1 and relu5_1 only
LAST_INTERMEDIATE = slice(-2, -1)  # the discriminator layer before the logits


class InadeLoss(SPADELoss):
    """G phase: hinge + 10 feature matching (last intermediate layer) + 10 VGG (relu4_1, relu5_1) + 0.05 x the mean
    of the scale and bias KL; D phase: hinge. The noise encoder is in G, so G's phase trains it."""

    def image_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return perceptual(self.vgg, fake, real, VGG_WEIGHTS)

    def feature_loss(self, fake_out: list, real_out: list) -> torch.Tensor:
        return feature_matching(fake_out, real_out, LAST_INTERMEDIATE)

    def kl_loss(self, posterior: tuple) -> torch.Tensor:
        """(KL(scale) + KL(bias)) / 2, each summed over instances, noise dimensions and the batch, as the official
        KLDLoss sums over the batch of its default single GPU: the mean over this round's samples times the global
        batch (`cfg.batch_size`), so the sum is the same however the batch is split into rounds and devices."""
        kl = sum(kl_divergence(mu.flatten(1), logvar.flatten(1)) for mu, logvar in posterior) / len(posterior)
        return kl * self.cfg.batch_size
