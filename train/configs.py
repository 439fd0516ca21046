"""PoE-GAN configurations: the supplement's Table 3 (B.4) per dataset, plus `tiny` for CPU demos and tests."""
from dataclasses import dataclass, field

SPATIAL = ("seg", "sketch")  # modalities with a local (per-resolution) expert, main paper Sec. 3.1 / Fig. 4b
GLOBAL_DIM = 512  # z^0 and w are 512-dimensional (supplement B.1)


@dataclass(frozen=True)
class PoEGANConfig:
    """One row of Table 3 plus the resolution it trains at."""

    resolution: int
    lr: float
    batch_size: int
    kl_weights: dict[str, float]  # per modality: text, seg, sketch, style
    image_contrastive: float
    text_contrastive: float
    channel_base: int  # decoder/discriminator channels at the highest resolution
    channel_max: int
    latent_base: int  # channels of z^N (highest resolution)
    latent_max: int
    clip_dim: int = 512  # CLIP ViT-B/32 embedding width; the text encoder is a 4-layer MLP of width 512 (B.2)
    min_resolution: int = 4
    mapping_hidden: int = GLOBAL_DIM  # z^0 -> w: 2 layers, hidden 512 (B.1)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        r = self.resolution
        if r < 8 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {r}")

    @property
    def resolutions(self) -> list[int]:
        """Decoder resolutions from the lowest (4x4) to the output resolution."""
        out, r = [], self.min_resolution
        while r <= self.resolution:
            out.append(r)
            r *= 2
        return out

    def channels(self, res: int) -> int:
        """Decoder/discriminator channels at `res`: base at the top, doubling as resolution halves, capped (B.4)."""
        return min(self.channel_base * self.resolution // res, self.channel_max)

    def encoder_channels(self, res: int) -> int:
        """Modality encoders run at a quarter of the decoder's channels (B.4)."""
        return max(self.channels(res) // 4, 1)

    def latent_channels(self, res: int) -> int:
        """Channels of z^k at `res`: latent base at the top, doubling as resolution halves, capped (B.4)."""
        return min(self.latent_base * self.resolution // res, self.latent_max)


def _table3(resolution, lr, batch, text, seg, sketch, style, img_c, txt_c, cbase, cmax, lbase, lmax):
    kl = {"text": text, "seg": seg, "sketch": sketch, "style": style}
    return PoEGANConfig(resolution, lr, batch, kl, img_c, txt_c, cbase, cmax, lbase, lmax)


# Supplement Table 3, column by column (learning rate, batch size, KL weights text/seg/sketch/style, image and
# text contrastive weights, base/max channels of decoder/discriminator, base/max channels of the latents).
CONFIGS: dict[str, PoEGANConfig] = {
    "celeba-1024": _table3(1024, 0.003, 64, 0.01, 0.01, 0.1, 0.0005, 0.3, 0.3, 16, 512, 2, 32),
    "celeba-256": _table3(256, 0.003, 64, 0.1, 0.1, 1.0, 0.005, 0.3, 0.3, 64, 512, 16, 64),
    "coco-256": _table3(256, 0.004, 256, 0.01, 0.01, 0.1, 0.001, 3.0, 0.3, 128, 1024, 16, 64),
    "coco-64": _table3(64, 0.004, 128, 0.1, 0.1, 1.0, 0.01, 3.0, 0.3, 256, 512, 64, 64),
    "landscape-1024": _table3(1024, 0.004, 768, 0.05, 0.1, 1.0, 0.01, 3.0, 0.3, 32, 1024, 2, 32),
    # Not in the paper: 32 px with small channels so it trains on the built-in sample on a CPU in minutes.
    # KL weights 0.001: with Table 3's 0.1-1 the segmentation KL collapses to ~0 in short CPU runs (the expert is
    # ignored); at 0.001 a 1,500-step run on 4 images follows their layouts (docs/poegan.md).
    "tiny": _table3(32, 0.002, 8, 0.001, 0.001, 0.001, 0.001, 0.3, 0.3, 32, 128, 4, 16),
}


def get_config(name: str) -> PoEGANConfig:
    """The configuration `name`; unknown names raise KeyError listing the known ones."""
    if name not in CONFIGS:
        raise KeyError(f"unknown PoE-GAN config {name!r}; known: {', '.join(CONFIGS)}")
    return CONFIGS[name]
