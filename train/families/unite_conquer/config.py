"""Unite-and-Conquer configurations (Nair et al., CVPR 2023, arXiv:2212.00793): the UNet of each
expert as ADM configures it (openai/guided-diffusion README model flags), the diffusion, and the sampler."""
from dataclasses import dataclass, field, replace

from shardio.modalities import MODEL_MODALITIES

# One expert per generator modality but the style (the image itself); its condition is the modality of the same
# name. Built in name order: seg, sketch, text.
EXPERTS = tuple(sorted(set(MODEL_MODALITIES) - {"style"}))
# Fraction of training samples whose condition is dropped to null, so each expert also predicts the unconditional
# epsilon. Nithin-GK/UniteandConquer train_code/guided_diffusion/image_datasets.py: the spatial maps are given to half
# the samples; of the other half, 3/4 get the CLIP embedding, so it is null for 1 - 0.5 * 0.75 of them.
NULL_FRACTION = {"seg": 0.5, "sketch": 0.5, "text": 0.625}


@dataclass(frozen=True)
class UniteConquerConfig:
    """One configuration: UNet widths, diffusion and sampling settings, product-of-experts weights."""

    resolution: int
    batch_size: int
    channels: int  # num_channels
    channel_mult: tuple[int, ...]
    res_blocks: int = 2  # num_res_blocks
    attention: tuple[int, ...] = (32, 16, 8)  # resolutions with self-attention (attention_resolutions)
    head_channels: int = 64  # num_head_channels
    dropout: float = 0.0
    clip_dim: int = 512  # set to the shards' CLIP width by train/data.py fit_to_shards
    # Nithin-GK/UniteandConquer train_code/scripts/train.py create_argparser: lr 1e-5, weight_decay 0 (AdamW without
    # weight decay = Adam), lr_anneal_steps 0 (constant); not guided-diffusion's README 1e-4
    lr: float = 1e-5
    timesteps: int = 1000  # T; linear betas (ADM noise_schedule linear, scaled for T = 1000)
    beta_start: float = 1e-4
    beta_end: float = 0.02
    sample_steps: int = 100  # respaced steps at sampling (the official scripts: timestep_respacing "ddim100")
    sampler: str = "ddim"  # "ddim" (eta = 0) or "ancestral"
    experts: tuple[str, ...] = EXPERTS
    # paper Eq. 10: guidance weight w_i per expert (Sec. 4.1: w_i = 1 for the face experiments) and reliabilities
    # a_j of the unconditional estimates (Sec. 4.1: a_j = 1/N over the N experts in use; None = that)
    weights: dict[str, float] = field(default_factory=lambda: {e: 1.0 for e in EXPERTS})
    reliabilities: dict[str, float] | None = None
    eval_images: int | None = None  # at most this many test images per condition (sampling costs steps x passes)

    def __post_init__(self):
        r, levels = self.resolution, len(self.channel_mult)
        if r % 2 ** (levels - 1):
            raise ValueError(f"resolution {r} does not halve {levels - 1} times")
        if self.sampler not in ("ddim", "ancestral"):
            raise ValueError(f"sampler must be 'ddim' or 'ancestral', got {self.sampler!r}")
        if not 1 <= self.sample_steps <= self.timesteps:
            raise ValueError(f"sample_steps must be in 1..{self.timesteps}, got {self.sample_steps}")
        unknown = set(self.experts) - set(EXPERTS) or set(self.weights) - set(self.experts)
        if unknown:
            raise ValueError(f"unknown experts {sorted(unknown)}; known: {EXPERTS}")
        if any(w < 1 for w in self.weights.values()):
            raise ValueError(f"Eq. 10 needs every weight w_i >= 1, got {self.weights}")


CONFIGS = {
    # CPU demos and tests: a few M parameters, attention at 8 px only, 50 DDIM steps; lr 2e-3 (a project choice,
    # not the official 1e-5): learning within the few hundred steps a CPU test affords (docs/unite-conquer.md)
    "tiny": UniteConquerConfig(32, 4, channels=32, channel_mult=(1, 2, 2), res_blocks=1, attention=(8,),
                               head_channels=32, lr=2e-3, sample_steps=50, eval_images=16),
    # the official face model (the brief's ADM flags): 192 channels, 1,1,2,2,4,4, attention 32/16/8 at 64 ch/head
    "celeba-256": UniteConquerConfig(256, 16, channels=192, channel_mult=(1, 1, 2, 2, 4, 4), eval_images=500),
    # ADM's ImageNet 64x64 model flags: 192 channels, 3 residual blocks, multipliers 1,2,3,4
    "coco-64": UniteConquerConfig(64, 64, channels=192, channel_mult=(1, 2, 3, 4), res_blocks=3,
                                  eval_images=2000),
    # the face model's UNet at 256 px on COCO-Stuff
    "coco-256": UniteConquerConfig(256, 16, channels=192, channel_mult=(1, 1, 2, 2, 4, 4), eval_images=500),
}


def with_params(cfg: UniteConquerConfig, section) -> UniteConquerConfig:
    """The profile with params train.unite-conquer's sampling settings (null: the profile's)."""
    return replace(cfg, sample_steps=section.sample_steps or cfg.sample_steps, sampler=section.sampler or cfg.sampler,
                   weights=dict(section.weights), reliabilities=section.reliabilities and dict(section.reliabilities),
                   eval_images=section.eval_images or cfg.eval_images)


def get_config(name: str) -> UniteConquerConfig:
    """The configuration `name`; unknown names raise KeyError listing the known ones."""
    if name not in CONFIGS:
        raise KeyError(f"unite-conquer has no configuration {name!r}; known: {', '.join(CONFIGS)}")
    return CONFIGS[name]
