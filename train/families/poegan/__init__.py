"""PoE-GAN (Huang et al., ECCV 2022): encoders, product-of-experts layers, generator, discriminator, its objective
and configurations, and its declaration (imports no torch)."""
from ..base import Declaration, VGGTrainParams
from .configs import CONFIGS
from .published import PUBLISHED

BETAS = (0.0, 0.99)  # B: Adam with beta1 = 0, beta2 = 0.99
GRAD_CLIP = 10.0  # B: gradient norms clipped at 10


def build():
    """PoE-GAN's ModelFamily: one constant learning rate for G and D (the configuration's), D's Adam adjusted for
    its lazy R1 phase."""
    from ...models import ModelFamily, OptimizerSettings, lazy_regularisation
    from .configs import get_config
    from .discriminator import Discriminator
    from .generator import Generator
    from .loss import PHASES, R1_INTERVAL, PoEGANLoss

    def optimizer(cfg):
        lr_D, betas_D = lazy_regularisation(cfg.lr, BETAS, R1_INTERVAL)  # D has lazy R1; G no regulariser
        return OptimizerSettings(cfg.lr, lr_D, BETAS, GRAD_CLIP, betas_D)

    return ModelFamily(get_config, lambda cfg, n: (Generator(cfg, n), Discriminator(cfg, n)), PoEGANLoss, optimizer,
                       phases=PHASES,
                       initialisation="equalized learning rate: N(0, 1) weights scaled by 1/sqrt(fan_in) at run time "
                       "(train/layers.py)")


POEGAN = Declaration(VGGTrainParams, tuple(CONFIGS), build, PUBLISHED)
