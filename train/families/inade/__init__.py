"""INADE (Tan et al., CVPR 2021): instance-adaptive normalisation and noise remapping on SPADE's discriminator and
loop settings, and its declaration (imports no torch)."""
from ..base import Declaration, VGGTrainParams
from ..spade import XAVIER
from .inade_config import CONFIGS
from .published import PUBLISHED


def build():
    """INADE's ModelFamily (docs/inade.md): scored under the segmentation only."""
    from ...models import ModelFamily, OptimizerSettings
    from .inade import networks
    from .inade_config import get_config, with_params
    from .inade_loss import InadeLoss

    return ModelFamily(get_config, networks, InadeLoss,
                       lambda cfg: OptimizerSettings(cfg.lr_G, cfg.lr_D, cfg.betas, cfg.grad_clip), conditions=("seg",),
                       with_params=with_params, initialisation=XAVIER + "; ILADE's class scales U(0, 1), offsets 0")


INADE = Declaration(VGGTrainParams, tuple(CONFIGS), build, PUBLISHED)
