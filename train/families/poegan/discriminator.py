"""Multiscale projection discriminator (main paper Fig. 5c, supplement B.3)."""
import math

import torch
from torch import nn

from .configs import GLOBAL_DIM, SPATIAL, PoEGANConfig
from ...layers import EqualConv2d, EqualLinear, lrelu
from .encoders import ModalityEncoders


class DBlock(nn.Module):
    """Residual block of the image encoder; its pre-downsampling output is the feature map of this scale."""

    def __init__(self, ch: int, out_ch: int, down: bool):
        super().__init__()
        self.conv = EqualConv2d(ch, ch, 3)
        self.down = EqualConv2d(ch, out_ch, 3, down=True) if down else None
        self.skip = EqualConv2d(ch, out_ch, 1, down=True, bias=False) if down else None

    def forward(self, x):
        feat = lrelu(self.conv(x))
        if self.down is None:
            return feat, None
        return feat, (lrelu(self.down(feat)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """A residual image encoder giving a feature map per scale; at each scale an unconditional logit plus, for
    each present modality, the inner product of its embedding (own unshared encoders, B.3; global codes
    replicated spatially) with the image features. Also embeds images and text for the text contrastive loss."""

    def __init__(self, cfg: PoEGANConfig, num_classes: int):
        super().__init__()
        self.res = cfg.resolutions[::-1]
        ch = cfg.channels
        self.from_rgb = EqualConv2d(3, ch(self.res[0]), 1)
        self.blocks = nn.ModuleDict({str(r): DBlock(ch(r), ch(max(r // 2, self.res[-1])), r != self.res[-1])
                                     for r in self.res})
        self.uncond = nn.ModuleDict({str(r): EqualConv2d(ch(r), 1, 1) for r in self.res})
        self.encoders = ModalityEncoders(cfg, num_classes)
        enc = cfg.encoder_channels
        self.project = nn.ModuleDict({
            "text": nn.ModuleDict({str(r): EqualLinear(self.encoders.text.out_dim, ch(r)) for r in self.res}),
            "style": nn.ModuleDict({str(r): EqualLinear(self.encoders.style.out_dim, ch(r)) for r in self.res}),
            **{n: nn.ModuleDict({str(r): EqualConv2d(enc(r), ch(r), 1) for r in self.res}) for n in SPATIAL}})
        self.image_embed = EqualLinear(ch(self.res[-1]), GLOBAL_DIM)
        self.text_embed = EqualLinear(self.encoders.text.out_dim, GLOBAL_DIM)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(0.3)))  # B: text contrastive, learnable from 0.3

    def forward(self, image, cond: dict, masks: dict):
        """Per-scale logits [B] (a list, highest resolution first), the image's global embedding [B, 512] and the
        text's embedding in the same space (for the text contrastive loss)."""
        codes = self.encoders(cond)
        h, logits = self.from_rgb(image), []
        for r in self.res:
            feat, h = self.blocks[str(r)](h)
            logit = self.uncond[str(r)](feat).mean((1, 2, 3))
            for name, proj in self.project.items():
                if name in SPATIAL:
                    emb = proj[str(r)](codes[name][r])
                    term = (emb.float() * feat.float()).sum(1).mean((1, 2))  # fp32: the sum can overflow fp16
                else:  # a global code replicated over the map: the spatial mean of the inner product
                    term = (proj[str(r)](codes[name]).float() * feat.float().mean((2, 3))).sum(1)
                logit = logit + term * masks[name].to(term.dtype) / math.sqrt(feat.shape[1])
            logits.append(logit)
        return logits, self.image_embed(feat.mean((2, 3))), self.text_embed(codes["text"])
