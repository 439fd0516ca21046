"""Modality encoders (supplement B.2, Fig. 1); the discriminator builds its own unshared copies (B.3)."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .configs import PoEGANConfig
from ...layers import MLP, EqualConv2d, lrelu


class TextEncoder(nn.Module):
    """A 4-layer MLP of width 512 over the CLIP embedding of a caption (Fig. 1a)."""

    def __init__(self, clip_dim: int, width: int = 512):
        super().__init__()
        self.out_dim = width
        self.mlp = MLP([clip_dim, width, width, width, width])

    def forward(self, clip):
        return self.mlp(clip)


class SpatialEncoder(nn.Module):
    """A CNN with skip connections from the input (Fig. 1b/c): the map is downsampled repeatedly and its
    embedding at each resolution is added to the conv output there; every resolution's features are returned
    (the decoder reads them through skip connections)."""

    def __init__(self, cfg: PoEGANConfig, in_ch: int):
        super().__init__()
        self.res = cfg.resolutions[::-1]  # highest first
        ch = cfg.encoder_channels
        self.embed = nn.ModuleDict({str(r): EqualConv2d(in_ch, ch(r), 1) for r in self.res})
        self.conv = nn.ModuleDict({str(r): EqualConv2d(ch(r), ch(r), 3) for r in self.res})
        self.down = nn.ModuleDict({str(r): EqualConv2d(ch(r), ch(r // 2), 3, down=True) for r in self.res[:-1]})
        self.channels = {r: ch(r) for r in self.res}

    def forward(self, x) -> dict[int, torch.Tensor]:
        feats, h = {}, self.embed[str(self.res[0])](x)
        for r in self.res:
            h = lrelu(self.conv[str(r)](h))
            feats[r] = h
            if r in self.down_res:
                x = F.avg_pool2d(x, 2)  # class fractions of the one-hot map / stroke density of the sketch
                h = lrelu(self.down[str(r)](h)) + self.embed[str(r // 2)](x)
        return feats

    @property
    def down_res(self):
        return self.res[:-1]


class StyleBlock(nn.Module):
    """Residual block with instance norm, downsampling by 2 when `down`."""

    def __init__(self, in_ch, out_ch, down):
        super().__init__()
        self.conv1 = EqualConv2d(in_ch, in_ch, 3)
        self.conv2 = EqualConv2d(in_ch, out_ch, 3, down=down)
        self.skip = EqualConv2d(in_ch, out_ch, 1, down=down, bias=False)

    def forward(self, x):
        h = self.conv1(lrelu(F.instance_norm(x)))
        h = self.conv2(lrelu(F.instance_norm(h)))
        return (h + self.skip(x)) / math.sqrt(2)


class StyleEncoder(nn.Module):
    """A residual network with instance norm (Fig. 1d); the style code concatenates the mean and standard
    deviation of every residual block's output."""

    def __init__(self, cfg: PoEGANConfig):
        super().__init__()
        res = cfg.resolutions[::-1]
        ch = cfg.encoder_channels
        self.from_rgb = EqualConv2d(3, ch(res[0]), 1)
        self.blocks = nn.ModuleList(StyleBlock(ch(r), ch(max(r // 2, res[-1])), r != res[-1]) for r in res)
        self.out_dim = 2 * sum(ch(max(r // 2, res[-1])) for r in res)

    def forward(self, image):
        h, stats = self.from_rgb(image), []
        for block in self.blocks:
            h = block(h)
            flat = h.float().flatten(2)
            stats += [flat.mean(2), (flat.var(2, unbiased=False) + 1e-8).sqrt()]
        return torch.cat(stats, 1)


class ModalityEncoders(nn.Module):
    """One encoder per modality: text, seg (one-hot over the label map), sketch, style (the image)."""

    def __init__(self, cfg: PoEGANConfig, num_classes: int):
        super().__init__()
        self.text = TextEncoder(cfg.clip_dim)
        self.seg = SpatialEncoder(cfg, num_classes)
        self.sketch = SpatialEncoder(cfg, 1)
        self.style = StyleEncoder(cfg)

    def forward(self, cond: dict) -> dict:
        """{text: [B,512], style: [B,S], seg: {res: map}, sketch: {res: map}}."""
        return {"text": self.text(cond["text"]), "style": self.style(cond["style"]),
                "seg": self.seg(cond["seg"]), "sketch": self.sketch(cond["sketch"])}
