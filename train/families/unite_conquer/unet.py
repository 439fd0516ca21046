"""ADM's UNet (Dhariwal & Nichol 2021, openai/guided-diffusion unet.py: UNetModel) as Unite-and-Conquer conditions
it (Nithin-GK/UniteandConquer train_code/guided_diffusion/unet.py): a spatial condition map goes through a 3x3 conv
to 3 channels concatenated with x_t; a CLIP embedding is a second scale-shift modulation in every residual block.
Output: 2 x 3 channels, epsilon and the learned-range variance interpolant v."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import UniteConquerConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of (float) timesteps: cosines then sines of geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def norm(channels: int) -> nn.GroupNorm:
    """ADM's normalization: GroupNorm with 32 groups."""
    return nn.GroupNorm(32, channels)


def zero(module: nn.Module) -> nn.Module:
    """The module with its parameters zeroed (ADM's zero_module: residual branches start as identities)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Residual block with scale-shift norm of the timestep embedding, optionally a second one of the CLIP
    embedding, and optional 2x up- or down-sampling of both paths (resblock_updown)."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int, dropout: float, clip_dim: int | None,
                 resample: str | None = None):
        super().__init__()
        self.in_norm, self.in_conv = norm(channels), nn.Conv2d(channels, out_channels, 3, padding=1)
        self.resample = resample
        self.emb = nn.Linear(emb_channels, 2 * out_channels)
        self.clip = nn.Linear(clip_dim, 2 * out_channels) if clip_dim else None
        self.out_norm = norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = zero(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor, clip: torch.Tensor | None) -> torch.Tensor:
        h = self.in_conv(self._resample(F.silu(self.in_norm(x))))
        x = self._resample(x)
        scale, shift = self.emb(F.silu(emb))[..., None, None].chunk(2, dim=1)
        h = self.out_norm(h) * (1 + scale) + shift
        if self.clip is not None:
            scale, shift = self.clip(F.silu(clip))[..., None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return self.skip(x) + self.out_conv(self.dropout(F.silu(h)))


class Attention(nn.Module):
    """Self-attention over positions with heads of `head_channels` channels (ADM's AttentionBlock)."""

    def __init__(self, channels: int, head_channels: int):
        super().__init__()
        self.heads = channels // head_channels
        self.norm = norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor, *_) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        qkv = self.qkv(self.norm(x).flatten(2))  # [B, 3C, N]
        q, k, v = qkv.reshape(b * self.heads, 3 * c // self.heads, -1).chunk(3, dim=1)  # heads, then q/k/v
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.proj(out.transpose(1, 2).reshape(b, c, -1)).reshape(b, c, hgt, wid)


class Block(nn.ModuleList):
    """A sequence of residual and attention layers taking (x, emb, clip)."""

    def forward(self, x, emb, clip):
        for layer in self:
            x = layer(x, emb, clip)
        return x


class UNet(nn.Module):
    """One expert: epsilon and v of x_t at timestep t given its condition. `cond_channels`: channels of its spatial
    condition (0: none); `clip`: whether it takes a CLIP embedding."""

    def __init__(self, cfg: UniteConquerConfig, cond_channels: int = 0, clip: bool = False):
        super().__init__()
        ch, emb_ch, clip_dim = cfg.channels, 4 * cfg.channels, cfg.clip_dim if clip else None
        self.model_channels = ch
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        self.cond = nn.Conv2d(cond_channels, 3, 3, padding=1) if cond_channels else None
        in_channels = 6 if cond_channels else 3
        self.inputs = nn.ModuleList([Block([_Conv(in_channels, ch)])])
        skips, res = [ch], cfg.resolution

        def layers(c_in, c_out):
            out = [ResBlock(c_in, emb_ch, c_out, cfg.dropout, clip_dim)]
            if res in cfg.attention:
                out.append(Attention(c_out, cfg.head_channels))
            return out

        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.res_blocks):
                self.inputs.append(Block(layers(ch, mult * cfg.channels)))
                ch = mult * cfg.channels
                skips.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.inputs.append(Block([ResBlock(ch, emb_ch, ch, cfg.dropout, clip_dim, "down")]))
                skips.append(ch)
                res //= 2
        self.middle = Block([ResBlock(ch, emb_ch, ch, cfg.dropout, clip_dim), Attention(ch, cfg.head_channels),
                             ResBlock(ch, emb_ch, ch, cfg.dropout, clip_dim)])
        self.outputs = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.res_blocks + 1):
                block = layers(ch + skips.pop(), mult * cfg.channels)
                ch = mult * cfg.channels
                if level and i == cfg.res_blocks:
                    block.append(ResBlock(ch, emb_ch, ch, cfg.dropout, clip_dim, "up"))
                    res *= 2
                self.outputs.append(Block(block))
        self.out = nn.Sequential(norm(ch), nn.SiLU(), zero(nn.Conv2d(ch, 6, 3, padding=1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                clip: torch.Tensor | None = None) -> torch.Tensor:
        """[B, 6, H, W]: epsilon (3 channels) and v (3) for x_t [B, 3, H, W] at timesteps t [B]; `cond` a
        condition map [B, cond_channels, H, W] (zeros: null), `clip` an embedding [B, clip_dim] (zeros: null)."""
        emb = self.time_embed(timestep_embedding(t, self.model_channels))
        h = x if self.cond is None else torch.cat([x, self.cond(cond.to(x.dtype))], 1)
        hs = []
        for block in self.inputs:
            h = block(h, emb, clip)
            hs.append(h)
        h = self.middle(h, emb, clip)
        for block in self.outputs:
            h = block(torch.cat([h, hs.pop()], 1), emb, clip)
        return self.out(h)


class _Conv(nn.Conv2d):
    """The input 3x3 conv, ignoring the embeddings."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 3, padding=1)

    def forward(self, x, *_):
        return super().forward(x)
