"""INADE (Tan et al., CVPR 2021, "Diverse Semantic Image Synthesis via Probability Distribution Modeling",
and its supplement): SPADE's generator with instance-adaptive (ILADE) normalisation, a U-Net noise encoder of
instance-aware convolutions (prior noise remapping), and SPADE's discriminator on one-hot ⊕ instance edges ⊕
image. Layer facts from tzt101/INADE models/networks (generator.py, architecture.py, normalization.py ILADE,
encoder.py instanceAdaptiveEncoder, partialconv2d.py InstanceAwareConv2d, base_network.py init) and
models/pix2pix_model.py. Our data has no instance masks: each class present in an image is one instance, as the
official make_instances.py re-indexes label maps, so the instance one-hot map is the class one-hot map."""
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ...noise import randn_like
from .inade_config import InadeConfig
from ..spade.spade import INIT_GAIN, MultiscaleDiscriminator, _act, xavier_init


def instance_ids(seg: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] float instance index of each pixel: its class (the argmax of the one-hot map, as the official
    encoder takes the argmax of the instance one-hot map)."""
    return seg.argmax(1, keepdim=True).to(seg.dtype)


def instance_edges(seg: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] 1 where a pixel's right/left/lower/upper neighbour belongs to another instance (get_edges)."""
    ids = seg.argmax(1, keepdim=True)
    dx = (ids[..., :, 1:] != ids[..., :, :-1]).to(seg.dtype)
    dy = (ids[..., 1:, :] != ids[..., :-1, :]).to(seg.dtype)
    edges = F.pad(dx, (1, 0)) + F.pad(dx, (0, 1)) + F.pad(dy, (0, 0, 1, 0)) + F.pad(dy, (0, 0, 0, 1))
    return edges.clamp(max=1)


def instance_average(x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """[B, L, C]: the mean of x [B, C, H, W] over each instance mask of seg [B, L, H, W] (0 for an absent one)."""
    masks = seg.float()  # pixel counts in fp32 (fp16 tops out at 65504 pixels); the einsum then takes means
    weights = masks / masks.sum((2, 3), keepdim=True).clamp(min=1)
    return torch.einsum("bchw,blhw->blc", x, weights.to(x.dtype))


class InstanceAwareConv(nn.Module):
    """3x3 convolution (padding 1) whose taps outside the centre pixel's instance are zeroed (InstanceAwareConv2d:
    the unfolded input times 1 - clamp(|id(tap) - id(centre)|, 0, 1), which is 'same id' for integer ids).
    `heads` > 1: the output channels are that many heads, each initialised as a convolution of its own."""

    def __init__(self, cin: int, cout: int, stride: int = 1, heads: int = 1):
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(cout, cin, 3, 3))
        self.bias = nn.Parameter(torch.zeros(cout))
        for head in self.weight.data.chunk(heads):
            nn.init.xavier_normal_(head, INIT_GAIN)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        taps = F.unfold(F.interpolate(ids, size=(h, w), mode="nearest"), 3, padding=1, stride=self.stride)
        same = (taps == taps[:, 4:5]).to(x.dtype)  # [B, 9, positions]; tap 4 is the centre
        columns = F.unfold(x, 3, padding=1, stride=self.stride).view(n, c, 9, -1) * same[:, None]
        out = torch.einsum("om,bmp->bop", self.weight.flatten(1).to(x.dtype), columns.flatten(1, 2))
        out = out + self.bias.to(out.dtype)[:, None]
        return out.view(n, -1, (h - 1) // self.stride + 1, (w - 1) // self.stride + 1)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class NoiseEncoder(nn.Module):
    """instanceAdaptiveEncoder: a U-Net of instance-aware 3x3 convs, each followed by instance norm (no affine)
    and leaky ReLU 0.2 -- four stride-2 convs (ngf, 2, 4, 8 ngf), a middle conv (4 ngf), three convs on the
    bilinearly upsampled output concatenated with the encoder's features (2, 1, 1 ngf), one more upsampling to
    full size -- then four instance-aware heads (mean and log-variance of the scale noise and of the bias noise),
    each averaged over every instance. Returns [B, L, noise_dim] x 4: scale mu, scale logvar, bias mu, bias logvar."""

    def __init__(self, cfg: InadeConfig):
        super().__init__()
        nf = cfg.ngf
        self.down = nn.ModuleList(InstanceAwareConv(a, b, stride=2)
                                  for a, b in zip((3, nf, 2 * nf, 4 * nf), (nf, 2 * nf, 4 * nf, 8 * nf)))
        self.middle = InstanceAwareConv(8 * nf, 4 * nf)
        self.up = nn.ModuleList(InstanceAwareConv(a, b) for a, b in ((8 * nf, 2 * nf), (4 * nf, nf), (2 * nf, nf)))
        self.heads = InstanceAwareConv(nf, 4 * cfg.noise_dim, heads=4)

    def forward(self, image: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ids = instance_ids(seg)
        skips, x = [], image
        for conv in self.down:
            x = _act(F.instance_norm(conv(x, ids)))
            skips.append(x)
        y = _up(_act(F.instance_norm(self.middle(x, ids))))
        for conv, skip in zip(self.up, reversed(skips[:-1])):
            y = _up(_act(F.instance_norm(conv(torch.cat([y, skip], 1), ids))))
        return instance_average(self.heads(y, ids), seg).chunk(4, -1)


class ILADE(nn.Module):
    """Instance-adaptive denormalisation: parameter-free batch norm, then per instance a scale and a shift, each
    its class's learned vector times a linear map of the instance's noise plus its class's learned offset
    (scale tensors initialised U(0, 1), offsets 0; one linear map for the scale and the bias noise)."""

    def __init__(self, channels: int, num_classes: int, noise_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)  # 'spectralspadesyncbatch3x3': per process here
        self.weight = nn.Parameter(torch.empty(num_classes, channels, 2).uniform_(0, 1))
        self.bias = nn.Parameter(torch.zeros(num_classes, channels, 2))
        self.fc_noise = nn.Linear(noise_dim, channels)

    def forward(self, x: torch.Tensor, seg: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W], seg [B, L, h, w] one-hot, noise [B, L, 2, noise_dim] (scale, bias) per instance."""
        affine = self.weight.transpose(1, 2) * self.fc_noise(noise) + self.bias.transpose(1, 2)  # [B, L, 2, C]
        masks = F.interpolate(seg, size=x.shape[-2:], mode="nearest").to(affine.dtype)
        scale, shift = torch.einsum("blsc,blhw->sbchw", affine, masks)
        return self.norm(x) * scale + shift


class ILADEResBlock(nn.Module):
    """SPADE's residual block with ILADE in place of SPADE: ILADE -> lrelu -> spectral-norm 3x3 conv, twice,
    middle width min(in, out); an ILADE + spectral-norm 1x1 conv shortcut when the width changes."""

    def __init__(self, fin: int, fout: int, num_classes: int, noise_dim: int):
        super().__init__()
        mid = min(fin, fout)
        self.norm_0 = ILADE(fin, num_classes, noise_dim)
        self.conv_0 = spectral_norm(nn.Conv2d(fin, mid, 3, padding=1))
        self.norm_1 = ILADE(mid, num_classes, noise_dim)
        self.conv_1 = spectral_norm(nn.Conv2d(mid, fout, 3, padding=1))
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.norm_s = ILADE(fin, num_classes, noise_dim)
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))

    def forward(self, x, seg, noise):
        shortcut = self.conv_s(self.norm_s(x, seg, noise)) if self.learned_shortcut else x
        dx = self.conv_0(_act(self.norm_0(x, seg, noise)))
        dx = self.conv_1(_act(self.norm_1(dx, seg, noise)))
        return shortcut + dx


class InadeGenerator(nn.Module):
    """A random z_dim vector -> linear to 16 ngf x (resolution / 2^upsamplings) x (aspect times that) -> seven
    ILADE residual blocks (16, 16, 16, 8, 4, 2, 1 x ngf) with nearest 2x upsampling -> lrelu -> 3x3 conv -> tanh;
    every ILADE layer draws on the same per-instance noise [B, L, 2, noise_dim].

    Called like the other generators, `G(batch, masks)` -> (image, posterior): samples whose `masks["style"]` is
    set remap their noise through the encoder from `batch["style"]` (noise * sigma + mu per instance, the
    posterior ((scale mu, logvar), (bias mu, logvar)) is returned for the KL), the others keep N(0, I) noise;
    `masks=None` remaps every sample. `noise` / `latent` given explicitly replace the drawn ones (exemplar noise
    per instance, or resampling one instance's noise while keeping the rest)."""

    def __init__(self, cfg: InadeConfig, num_classes: int):
        super().__init__()
        self.cfg, nf = cfg, cfg.ngf
        self.modalities = ("seg", "style")
        h = cfg.resolution // 2 ** cfg.upsamplings
        self.start = (h, h * cfg.aspect)
        self.fc = nn.Linear(cfg.z_dim, 16 * nf * h * h * cfg.aspect)
        widths = [16, 16, 16, 16, 8, 4, 2, 1]  # head_0, G_middle_0, G_middle_1, up_0 .. up_3
        self.blocks = nn.ModuleList(ILADEResBlock(a * nf, b * nf, num_classes, cfg.noise_dim)
                                    for a, b in zip(widths[:-1], widths[1:]))
        # upsample before every block but head_0, and G_middle_1 unless 'more'
        self.upsample_before = {1, 3, 4, 5, 6} | ({2} if cfg.upsamplings == 6 else set())
        self.conv_img = nn.Conv2d(nf, 3, 3, padding=1)
        self.encoder = NoiseEncoder(cfg)
        xavier_init(self)  # the spectral-normed convolutions keep PyTorch's default weights (spade.xavier_init)

    def noise(self, batch: dict, masks: dict | None) -> tuple[torch.Tensor, tuple]:
        """Per-instance noise [B, L, 2, noise_dim]: N(0, I), remapped by the encoder where the style is given
        (pre_process_noise); and the posterior ((scale mu, logvar), (bias mu, logvar))."""
        seg = batch["seg"]
        prior = randn_like(seg.new_empty(len(seg), seg.shape[1], 2, self.cfg.noise_dim))
        s_mu, s_logvar, b_mu, b_logvar = self.encoder(batch["style"], seg)
        mu, logvar = torch.stack([s_mu, b_mu], 2), torch.stack([s_logvar, b_logvar], 2)
        remapped = prior * torch.exp(0.5 * logvar) + mu
        if masks is not None:
            remapped = torch.where(masks["style"].to(seg.device)[:, None, None, None], remapped, prior)
        return remapped, ((s_mu, s_logvar), (b_mu, b_logvar))

    def forward(self, batch: dict, masks: dict | None = None, *, noise: torch.Tensor | None = None,
                latent: torch.Tensor | None = None):
        seg = batch["seg"]
        posterior = None
        if noise is None:
            noise, posterior = self.noise(batch, masks)
        if latent is None:
            latent = randn_like(seg.new_empty(len(seg), self.cfg.z_dim))
        x = self.fc(latent).view(len(seg), -1, *self.start)
        for i, block in enumerate(self.blocks):
            if i in self.upsample_before:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(x, seg, noise)
        return torch.tanh(self.conv_img(_act(x))), posterior


class InstanceEdgeDiscriminator(MultiscaleDiscriminator):
    """SPADE's two-scale patch discriminator on image ⊕ one-hot segmentation ⊕ instance edges."""

    extra_channels = 1

    def conditioning(self, batch: dict) -> torch.Tensor:
        return torch.cat([batch["seg"], instance_edges(batch["seg"])], 1)


def networks(cfg: InadeConfig, num_classes: int) -> tuple[InadeGenerator, InstanceEdgeDiscriminator]:
    """(G, D) of one configuration; the noise encoder lives in G (trained by G's optimizer, as netIE)."""
    D = InstanceEdgeDiscriminator(cfg, num_classes)
    xavier_init(D)
    return InadeGenerator(cfg, num_classes), D
