"""INADE configurations (Tan et al., CVPR 2021, docs/architecture.md; tzt101/INADE option defaults) and its
optimizer settings (SPADE's TTUR)."""
from dataclasses import dataclass, replace

from ..spade.spade_config import TTUR


@dataclass(frozen=True)
class InadeConfig(TTUR):
    """Widths, layout and loss weights of one INADE configuration. `resolution` is the image height; the width is
    `aspect` times it (Cityscapes: 2). `upsamplings` 5 is SPADE's 'normal' generator (it starts at 1/32 of the
    size), 6 its 'more' (an extra 2x upsampling between the middle blocks, 1/64), which tzt101/INADE
    data/cityscapes_dataset.py sets for Cityscapes."""

    resolution: int
    batch_size: int
    lr: float = 0.0002  # --lr (SPADE's train_options); TTUR from it
    ngf: int = 64  # --ngf: generator and noise-encoder base width
    ndf: int = 64  # --ndf
    z_dim: int = 256  # --z_dim: the random vector the generator's linear layer starts from
    noise_dim: int = 64  # --noise_nc: per-instance noise of the ILADE layers (8 on DeepFashion, README)
    num_d: int = 2  # --num_D
    d_layers: int = 4  # --n_layers_D
    feat_weight: float = 10.0  # lambda_feat, on the last intermediate discriminator layer only
    vgg_weight: float = 10.0  # lambda_vgg, VGG layer weights (0, 0, 0, 1/4, 1)
    kl_weight: float = 0.05  # lambda_kld, times the mean of the scale and bias KL terms
    aspect: int = 1  # --aspect_ratio (width / height)
    upsamplings: int = 5  # --num_upsampling_layers: 5 'normal', 6 'more'

    condition = "seg"  # the modality the generator and discriminator see (INADE is segmentation-only)

    def __post_init__(self):
        if self.upsamplings not in (5, 6):
            raise ValueError(f"upsamplings must be 5 ('normal') or 6 ('more'), got {self.upsamplings}")
        if self.resolution % 2 ** self.upsamplings or self.resolution < 2 ** self.upsamplings:
            raise ValueError(f"resolution must be a multiple of {2 ** self.upsamplings} (the generator starts at "
                             f"resolution / 2^{self.upsamplings}), got {self.resolution}")
        if self.aspect < 1:
            raise ValueError(f"aspect must be a positive integer, got {self.aspect}")


CONFIGS: dict[str, InadeConfig] = {
    # 256x256 as the paper's CelebAMask-HQ (and ADE20K, for COCO-like scenes) results; batch 32 as SPADE's
    # multi-GPU runs (the official README gives no batch). Named like the dataset profiles' train_config.
    "coco-256": InadeConfig(256, 32),
    "celeba-256": InadeConfig(256, 32),
    # Not in the paper: 32 px with narrow layers so it trains on the built-in sample on a CPU in minutes; at 5x
    # the base rate, since from Xavier gain 0.02 (outputs near 0) the paper's rate leaves the generator nearly
    # where it started after the 600 steps of tests/test_train_inade.py's slow run, which this rate passes.
    "tiny": InadeConfig(32, 8, lr=0.001, ngf=8, ndf=16, z_dim=32, noise_dim=8),
}


def get_config(name: str) -> InadeConfig:
    """The INADE configuration `name`; unknown names raise KeyError listing the known ones."""
    if name not in CONFIGS:
        raise KeyError(f"unknown INADE config {name!r}; known: {', '.join(CONFIGS)}")
    return CONFIGS[name]


def with_params(cfg: InadeConfig, section) -> InadeConfig:
    """The configuration at params `batch_size` when set: the KL is summed over the batch the run trains at."""
    return replace(cfg, batch_size=section.batch_size or cfg.batch_size)
