"""PoE-GAN generator: modality encoders, global PoE-Net, and a decoder whose every resolution holds a local
PoE-Net and residual blocks modulated by LG-AdaIN (main paper Sec. 3.1, supplement B.1, B.4)."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .configs import GLOBAL_DIM, SPATIAL, PoEGANConfig
from ...layers import EqualConv2d, EqualLinear, Upsample, lrelu
from .encoders import ModalityEncoders
from .poe_nets import GlobalPoENet, LocalPoENet


class LGAdaIN(nn.Module):
    """Local-global adaptive instance norm: instance-normalise, modulate per pixel by an affine map of z^k at
    that pixel (a 1x1 conv, the per-pixel counterpart of AdaIN's affine map of w), normalise again and modulate
    per channel by w."""

    def __init__(self, ch: int, latent_ch: int):
        super().__init__()
        self.local = EqualConv2d(latent_ch, 2 * ch, 1)
        self.glob = EqualLinear(GLOBAL_DIM, 2 * ch)
        with torch.no_grad():
            self.glob.bias[:ch] = 1.0  # start as identity scale

    def forward(self, h, z, w):
        gamma, beta = self.local(z).chunk(2, 1)
        h = F.instance_norm(h) * (1 + gamma) + beta
        g_w, b_w = self.glob(w).chunk(2, 1)
        return F.instance_norm(h) * g_w[..., None, None] + b_w[..., None, None]


class DecoderBlock(nn.Module):
    """One resolution: (upsample), local PoE-Net, then a residual block with two LG-AdaIN + conv layers."""

    def __init__(self, in_ch, out_ch, enc_ch: dict, latent_ch, up: bool):
        super().__init__()
        self.up = Upsample() if up else None
        self.poe = LocalPoENet(in_ch, enc_ch, latent_ch)
        self.norm1, self.conv1 = LGAdaIN(in_ch, latent_ch), EqualConv2d(in_ch, out_ch, 3)
        self.norm2, self.conv2 = LGAdaIN(out_ch, latent_ch), EqualConv2d(out_ch, out_ch, 3)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, h, w, enc_feats, masks, eps=None):
        if self.up is not None:
            h = self.up(h)
        z, kls = self.poe(h, enc_feats, masks, eps)
        y = self.conv1(lrelu(self.norm1(h, z, w)))
        y = self.conv2(lrelu(self.norm2(y, z, w)))
        return (y + self.skip(h)) / math.sqrt(2), kls


class Generator(nn.Module):
    """Maps conditions (any subset present, per sample) to an image in [-1, 1] and the KL terms of Eq. 9."""

    def __init__(self, cfg: PoEGANConfig, num_classes: int):
        super().__init__()
        self.cfg, self.num_classes = cfg, num_classes
        self.encoders = ModalityEncoders(cfg, num_classes)
        low = cfg.min_resolution
        self.global_poe = GlobalPoENet({
            "text": self.encoders.text.out_dim, "style": self.encoders.style.out_dim,
            "seg": cfg.encoder_channels(low), "sketch": cfg.encoder_channels(low)}, cfg.mapping_hidden)
        self.const = nn.Parameter(torch.randn(cfg.channels(low), low, low))
        self.blocks = nn.ModuleDict()
        prev = cfg.channels(low)
        for r in cfg.resolutions:
            enc = {n: cfg.encoder_channels(r) for n in SPATIAL}
            self.blocks[str(r)] = DecoderBlock(prev, cfg.channels(r), enc, cfg.latent_channels(r), r != low)
            prev = cfg.channels(r)
        self.to_rgb = EqualConv2d(prev, 3, 1)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(0.3)))  # B: image contrastive, learnable from 0.3

    def forward(self, cond: dict, masks: dict):
        """cond: text [B,D], seg [B,C,H,W], sketch [B,1,H,W], style [B,3,H,W]; masks: per modality [B] bool.
        Returns (image, kls) with kls[k][modality] a [B] tensor, k = 0 for z^0 then one per resolution."""
        feats = self.encoders(cond)
        low = self.cfg.min_resolution
        pooled = {n: feats[n][low].mean((2, 3)) for n in SPATIAL}  # spatial modalities -> global vectors
        w, kl0 = self.global_poe({"text": feats["text"], "style": feats["style"], **pooled}, masks)
        kls = [kl0]
        for r, h, kl in self._decoder(w, {n: feats[n] for n in SPATIAL}, masks):
            kls.append(kl)
        return torch.tanh(self.to_rgb(lrelu(h))), kls

    def _decoder(self, w, enc_feats: dict, masks: dict, local_noise: dict | None = None):
        """Yields (resolution, decoder features, KL terms) block by block; enc_feats: per spatial modality its
        encoder features by resolution ({}: unconditional); local_noise: per resolution the draw of z^k."""
        h = self.const.unsqueeze(0).expand(w.shape[0], -1, -1, -1)
        for r, block in self.blocks.items():
            eps = None if local_noise is None else local_noise[int(r)]
            h, kl = block(h, w, {n: f[int(r)] for n, f in enc_feats.items()}, masks, eps)
            yield int(r), h, kl

    def unconditional(self, z0: torch.Tensor, local_noise: dict | None = None) -> torch.Tensor:
        """The image [B,3,H,W] of global latent z0 [B, 512] with every modality dropped: w = mapping(z0), each z^k
        from its prior expert with the standard normal draw local_noise[resolution] (broadcast over the batch;
        None: fresh draws). With z0 ~ N(0, I) this is `forward` under all-false masks."""
        *_, (_, h, _) = self._decoder(self.global_poe.mapping(z0), {}, {}, local_noise)
        return torch.tanh(self.to_rgb(lrelu(h)))

    def features(self, z0: torch.Tensor, resolution: int, local_noise: dict | None = None) -> torch.Tensor:
        """The decoder's features [B, C, r, r] at `resolution` (its block's output) in `unconditional`; the
        blocks above it are not run."""
        if str(resolution) not in self.blocks:
            raise ValueError(f"no decoder resolution {resolution}; the decoder has {', '.join(self.blocks)}")
        for r, h, _ in self._decoder(self.global_poe.mapping(z0), {}, {}, local_noise):
            if r == resolution:
                return h
