"""SPADE configurations (Park et al. 2019, NVlabs/SPADE option defaults) and its optimizer settings (TTUR)."""
from dataclasses import dataclass, replace

CONDITIONS = ("seg", "sketch")  # spade-seg: one-hot segmentation; spade-sketch: the sketch (PoE-GAN's baselines)


class TTUR:
    """SPADE's optimizer settings (NVlabs/SPADE pix2pix_model.create_optimizers under TTUR): the generator at half
    the base `lr`, the discriminator at twice it, betas (0, 0.9), no gradient clipping. INADE shares them."""

    betas = (0.0, 0.9)  # --beta1 0 --beta2 0.9 under TTUR
    grad_clip = None  # no gradient clipping in the official code

    @property
    def lr_G(self) -> float:
        return self.lr / 2

    @property
    def lr_D(self) -> float:
        return self.lr * 2


@dataclass(frozen=True)
class SPADEConfig(TTUR):
    """Widths and loss weights of one SPADE configuration; `condition` is the modality the generator sees."""

    resolution: int
    batch_size: int
    lr: float = 0.0002  # NVlabs/SPADE train_options --lr
    ngf: int = 64  # generator (and image encoder) base width, --ngf
    ndf: int = 64  # discriminator base width, --ndf
    z_dim: int = 256  # --z_dim
    spade_hidden: int = 128  # SPADE's shared conv width (nhidden in normalization.py)
    num_d: int = 2  # multiscale discriminator: 2 scales (--num_D)
    d_layers: int = 4  # conv layers of each patch discriminator (--n_layers_D, discriminator.py)
    feat_weight: float = 10.0  # lambda_feat
    vgg_weight: float = 10.0  # lambda_vgg
    kl_weight: float = 0.05  # lambda_kld
    condition: str = "seg"
    # --use_vae: an image encoder gives the style code z (KL to N(0, I)); without it SPADE is deterministic and
    # its first feature map is a 3x3 conv of the condition downsampled to resolution / 32 (generator.py)
    vae: bool = True

    def __post_init__(self):
        r = self.resolution
        if r < 32 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 32 (five 2x upsamplings), got {r}")
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")


CONFIGS: dict[str, SPADEConfig] = {
    # 256x256 as the SPADE paper trains COCO-Stuff; batch 32 as its multi-GPU runs. Named like the dataset
    # profiles' train_config so `pipeline train --model spade-seg` picks it for coco and mm-celeba-hq.
    "coco-256": SPADEConfig(256, 32),
    "celeba-256": SPADEConfig(256, 32),
    # Not in the paper: 32 px with narrow layers so it trains on the built-in sample on a CPU in minutes.
    "tiny": SPADEConfig(32, 8, ngf=8, ndf=16, z_dim=32, spade_hidden=32),
}


# MoNCE's paired setting (fnzhan/MoNCE SPADE_MoNCE train_*.sh): deterministic SPADE (no --use_vae), the
# perceptual L1 replaced by the modulated contrast at weight --lambda_vgg 50 (ADE20K, for COCO-like scenes) or
# 100 (CelebA-HQ), per-GPU batch 12 (ADE20K) or 20 (CelebA-HQ). docs/monce.md.
MONCE_CONFIGS: dict[str, SPADEConfig] = {
    "coco-256": replace(CONFIGS["coco-256"], batch_size=12, vgg_weight=50.0, vae=False),
    "celeba-256": replace(CONFIGS["celeba-256"], batch_size=20, vgg_weight=100.0, vae=False),
    "tiny": replace(CONFIGS["tiny"], vgg_weight=50.0, vae=False),
}


def config_for(condition: str, configs: dict[str, SPADEConfig] = CONFIGS):
    """The configuration lookup of a SPADE family on `condition`: configuration name -> SPADEConfig."""

    def get(name: str) -> SPADEConfig:
        if name not in configs:
            raise KeyError(f"unknown SPADE config {name!r}; known: {', '.join(configs)}")
        return replace(configs[name], condition=condition)

    return get
