"""SPADE (Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive Normalization"): generator of SPADE
residual blocks, convolutional image encoder (the VAE style path) and multiscale patch discriminator. Layer
facts from NVlabs/SPADE models/networks (generator.py, architecture.py, normalization.py, encoder.py,
discriminator.py): plain (not equalized) convolutions, spectral norm in the residual blocks, encoder and
discriminator, parameter-free batch norm inside SPADE, instance norm in encoder and discriminator, leaky ReLU 0.2;
every network initialised as base_network.py init_weights does on a GPU (`xavier_init`)."""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ...noise import randn_like
from .spade_config import SPADEConfig

UPSAMPLINGS = 5  # num_upsampling_layers 'normal': the generator starts at resolution / 32
SLOPE = 0.2
INIT_GAIN = 0.02  # base_options.py: --init_type xavier --init_variance 0.02 (the same in tzt101/INADE, fnzhan/MoNCE)


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, SLOPE)


def condition_channels(cfg: SPADEConfig, num_classes: int) -> int:
    """Channels of the conditioning map: the one-hot segmentation, or the 1-channel sketch."""
    return num_classes if cfg.condition == "seg" else 1


class SPADE(nn.Module):
    """Spatially-adaptive normalization: parameter-free batch norm, then a per-pixel scale (1 + gamma) and shift
    beta predicted from the condition map by a shared 3x3 conv + ReLU and two 3x3 convs."""

    def __init__(self, channels: int, cond_channels: int, hidden: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)  # SPADE: synchronized BN; per process here
        self.shared = nn.Sequential(nn.Conv2d(cond_channels, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x, cond):
        h = self.shared(F.interpolate(cond, size=x.shape[-2:], mode="nearest"))
        return self.norm(x) * (1 + self.gamma(h)) + self.beta(h)


class SPADEResBlock(nn.Module):
    """SPADE -> lrelu -> 3x3 conv, twice, middle width min(in, out); a learned SPADE + 1x1 shortcut when the
    width changes. Spectral norm on the block's convolutions ('spectralspadesyncbatch3x3')."""

    def __init__(self, fin: int, fout: int, cond_channels: int, hidden: int):
        super().__init__()
        mid = min(fin, fout)
        self.norm_0, self.conv_0 = SPADE(fin, cond_channels, hidden), spectral_norm(nn.Conv2d(fin, mid, 3, padding=1))
        self.norm_1, self.conv_1 = SPADE(mid, cond_channels, hidden), spectral_norm(nn.Conv2d(mid, fout, 3, padding=1))
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, cond_channels, hidden)
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))

    def forward(self, x, cond):
        shortcut = self.conv_s(self.norm_s(x, cond)) if self.learned_shortcut else x
        dx = self.conv_0(_act(self.norm_0(x, cond)))
        dx = self.conv_1(_act(self.norm_1(dx, cond)))
        return shortcut + dx


def _conv_in(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    """'spectralinstance': spectral-normalised conv without bias, then instance norm without affine."""
    conv = spectral_norm(nn.Conv2d(cin, cout, kernel, stride, padding=math.ceil((kernel - 1) / 2), bias=False))
    return nn.Sequential(conv, nn.InstanceNorm2d(cout, affine=False))


class ImageEncoder(nn.Module):
    """ConvEncoder: stride-2 3x3 convs (width ngf doubling, capped at 8 ngf) down to 4x4, then linear mu and
    log-variance of the z_dim style code. SPADE resizes inputs to 256; here to the configuration's resolution."""

    def __init__(self, cfg: SPADEConfig):
        super().__init__()
        widths = [cfg.ngf * min(2 ** i, 8) for i in range(int(math.log2(cfg.resolution // 4)))]
        self.layers = nn.ModuleList(_conv_in(a, b, 3, 2) for a, b in zip([3, *widths[:-1]], widths))
        self.fc_mu = nn.Linear(widths[-1] * 16, cfg.z_dim)
        self.fc_var = nn.Linear(widths[-1] * 16, cfg.z_dim)

    def forward(self, image):
        x = image
        for i, layer in enumerate(self.layers):
            x = layer(x if i == 0 else _act(x))
        x = _act(x).flatten(1)
        return self.fc_mu(x), self.fc_var(x)


def conditioned_on(cfg: SPADEConfig) -> tuple[str, ...]:
    """The modalities SPADE's G reads: its condition, and a style image when it has the VAE's encoder."""
    return (cfg.condition, "style") if cfg.vae else (cfg.condition,)


class SPADEGenerator(nn.Module):
    """z (from the image encoder, else N(0, I)) -> linear to 16 ngf x (resolution/32)^2 -> SPADE residual blocks
    with nearest 2x upsampling (16, 16, 16, 8, 4, 2, 1 x ngf) -> lrelu -> 3x3 conv -> tanh. Without the VAE
    (`cfg.vae` False) the first feature map is a 3x3 conv of the condition downsampled (nearest) to
    (resolution/32)^2 instead: one image per condition.

    Called like PoE-GAN's generator, `G(batch, masks)` -> (image, (mu, logvar) or None without the VAE): the
    condition is always `batch[cfg.condition]`; samples whose `masks["style"]` is set take their style code from
    `batch["style"]` through the encoder, the others draw z ~ N(0, I). `masks=None` encodes every sample."""

    def __init__(self, cfg: SPADEConfig, num_classes: int):
        super().__init__()
        self.cfg, nf, c, h = cfg, cfg.ngf, condition_channels(cfg, num_classes), cfg.spade_hidden
        self.modalities = conditioned_on(cfg)
        self.start = cfg.resolution // 2 ** UPSAMPLINGS
        if cfg.vae:
            self.encoder = ImageEncoder(cfg)
            self.fc = nn.Linear(cfg.z_dim, 16 * nf * self.start ** 2)
        else:
            self.fc = nn.Conv2d(c, 16 * nf, 3, padding=1)
        widths = [16, 16, 16, 16, 8, 4, 2, 1]  # head_0, G_middle_0, G_middle_1, up_0 .. up_3
        self.blocks = nn.ModuleList(SPADEResBlock(a * nf, b * nf, c, h) for a, b in zip(widths[:-1], widths[1:]))
        self.conv_img = nn.Conv2d(nf, 3, 3, padding=1)

    def style_code(self, batch: dict, masks: dict | None) -> tuple[torch.Tensor, tuple]:
        """Reparameterised z from the encoder where the style is given, N(0, I) elsewhere; and (mu, logvar)."""
        mu, logvar = self.encoder(batch["style"])
        z = mu + randn_like(mu) * torch.exp(0.5 * logvar)
        if masks is not None:
            z = torch.where(masks["style"].to(z.device)[:, None], z, randn_like(z))
        return z, (mu, logvar)

    def forward(self, batch: dict, masks: dict | None = None):
        cond = batch[self.cfg.condition]
        if self.cfg.vae:
            z, posterior = self.style_code(batch, masks)
            x = self.fc(z).view(len(z), -1, self.start, self.start)
        else:
            posterior = None
            x = self.fc(F.interpolate(cond, size=(self.start, self.start), mode="nearest"))
        for i, block in enumerate(self.blocks):
            if i not in (0, 2):  # upsample before every block but head_0 and G_middle_1 ('normal')
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(x, cond)
        return torch.tanh(self.conv_img(_act(x))), posterior


class PatchDiscriminator(nn.Module):
    """NLayerDiscriminator: 4x4 convs, the first plain, then spectral-instance ones doubling width (cap 512),
    stride 2 except the last, then a 4x4 conv to one logit per patch. Returns every layer's output."""

    def __init__(self, cin: int, ndf: int, layers: int):
        super().__init__()
        blocks = [nn.Sequential(nn.Conv2d(cin, ndf, 4, 2, padding=2), nn.LeakyReLU(SLOPE))]
        nf = ndf
        for n in range(1, layers):
            prev, nf = nf, min(nf * 2, 512)
            blocks.append(nn.Sequential(_conv_in(prev, nf, 4, 1 if n == layers - 1 else 2), nn.LeakyReLU(SLOPE)))
        blocks.append(nn.Conv2d(nf, 1, 4, 1, padding=2))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x) -> list[torch.Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    """`num_d` patch discriminators on (image, condition) concatenated, each next one at half resolution
    (3x3 average pooling, stride 2, padding not counted). Returns per scale the list of layer outputs, the
    last being the patch logits. A subclass may add channels to the condition (`extra_channels`, `conditioning`)."""

    extra_channels = 0

    def __init__(self, cfg: SPADEConfig, num_classes: int):
        super().__init__()
        self.cfg = cfg
        cin = 3 + condition_channels(cfg, num_classes) + self.extra_channels
        self.scales = nn.ModuleList(PatchDiscriminator(cin, cfg.ndf, cfg.d_layers) for _ in range(cfg.num_d))

    def conditioning(self, batch: dict) -> torch.Tensor:
        """The map the discriminator sees beside the image: the configuration's condition."""
        return batch[self.cfg.condition]

    def forward(self, image: torch.Tensor, batch: dict) -> list[list[torch.Tensor]]:
        x = torch.cat([image, self.conditioning(batch).to(image.dtype)], 1)
        outputs = []
        for i, scale in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(scale(x))
        return outputs


def xavier_init(module: nn.Module) -> None:
    """BaseNetwork.init_weights('xavier', 0.02) (models/networks/base_network.py) as it acts in the official
    GPU runs, drawn from torch's global RNG: normal Xavier weights (gain 0.02) and zero biases for every plain
    convolution and linear layer, N(1, 0.02) weights and zero biases for an affine batch norm. A spectral-normed
    convolution keeps the weights its module was built with (PyTorch's default) and gets a zero bias: the official
    create_network moves the network to the GPU before init_weights, and torch.nn.utils.spectral_norm's `weight`
    attribute then still points at the CPU copy of `weight_orig`, so the Xavier draw never reaches the trained
    weight. Other parameters (INADE's class tensors and instance-aware convolutions) are left as their modules
    made them."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, INIT_GAIN)
            nn.init.zeros_(m.bias)
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        if not parametrize.is_parametrized(m, "weight"):
            nn.init.xavier_normal_(m.weight, INIT_GAIN)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def networks(cfg: SPADEConfig, num_classes: int) -> tuple[SPADEGenerator, MultiscaleDiscriminator]:
    """(G, D) of one configuration, Xavier-initialised; the image encoder lives in G (trained by G's optimizer, as
    SPADE's netE)."""
    G, D = SPADEGenerator(cfg, num_classes), MultiscaleDiscriminator(cfg, num_classes)
    xavier_init(G)
    xavier_init(D)
    return G, D
