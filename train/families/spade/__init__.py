"""SPADE (Park et al., CVPR 2019) and MoNCE's paired setting on it (Zhan et al., CVPR 2022): networks,
configurations, losses, and the declarations of spade-seg, spade-sketch and spade-seg-monce (import no torch).
MoNCE lives here because it is SPADE's generator and discriminator with another image term: the same networks,
configurations (MONCE_CONFIGS) and loop settings."""
from ..base import Declaration, VGGTrainParams
from .spade_config import CONFIGS, MONCE_CONFIGS

# the SPADE family's initialisation (spade.py xavier_init), as the dry run names it
XAVIER = ("Xavier normal, gain 0.02, on plain convolutions and linear layers; spectral-normed convolutions keep "
          "PyTorch's default; biases 0 (NVlabs/SPADE --init_type xavier --init_variance 0.02, as it acts on a GPU)")


def build(condition: str, monce: bool = False):
    """SPADE on `condition`; `monce`: MoNCE's paired setting (deterministic SPADE, modulated patch contrast)."""
    from ...models import ModelFamily, OptimizerSettings
    from .monce_loss import MoNCELoss
    from .spade import conditioned_on, networks
    from .spade_config import config_for
    from .spade_loss import SPADELoss

    return ModelFamily(config_for(condition, MONCE_CONFIGS if monce else CONFIGS), networks,
                       MoNCELoss if monce else SPADELoss,
                       lambda cfg: OptimizerSettings(cfg.lr_G, cfg.lr_D, cfg.betas, cfg.grad_clip),
                       conditions=(condition,),  # conditioned on one modality: only evaluated under it
                       inputs=conditioned_on,
                       lr_decay=0.5,  # --niter = --niter_decay: the second half decays (docs/spade.md, monce.md)
                       initialisation=XAVIER)


SPADE_SEG = Declaration(VGGTrainParams, tuple(CONFIGS), lambda: build("seg"))
SPADE_SKETCH = Declaration(VGGTrainParams, tuple(CONFIGS), lambda: build("sketch"))
SPADE_SEG_MONCE = Declaration(VGGTrainParams, tuple(MONCE_CONFIGS), lambda: build("seg", monce=True))
