"""A compact class-conditional UNet predicting eps(x_t, t, y).

Architecture after Ho et al. 2020 / Dhariwal & Nichol 2021 ("ADM"), shrunk: residual blocks with GroupNorm and
an adaptive scale-shift from the embedding emb = MLP(sinusoid(t)) + E[y], skip connections between the down and
up paths, self-attention at the lowest resolution. With `patch` p > 1 the stem is a pixel unshuffle (Hoogeboom et
al. 2023, "simple diffusion": shift the work to lower resolution): the net sees (C p^2, H/p, W/p), and a pixel shuffle
turns its output back into (C, H, W). E has `num_classes + 1` rows; row `num_classes` is the
null label that label dropout trains, so one network gives both eps(x_t, t, c) and eps(x_t, t, null).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig, check_model_config


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017): (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]                                  # (B, dim/2)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """h = conv(SiLU(GN(x))); h = conv(SiLU(GN(h) (1 + scale) + shift)); return skip(x) + h."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)                             # -> (scale, shift)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(c_out, c_out, 3, padding=1))        # block starts as identity
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)   # (B, c_out, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual."""

    def __init__(self, channels: int, groups: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(1)                            # (B, nh, HW, hs) each
        h = F.scaled_dot_product_attention(q, k, v)                          # (B, nh, HW, hs)
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H, W))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x, emb=None):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, emb=None):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """eps_theta(x_t, t, y): (B, C, H, W), (B,) int64, (B,) int64 -> (B, C, H, W).

    `y == cfg.num_classes` is the null label: the unconditional prediction eps_theta(x_t, t, null).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        check_model_config(cfg)
        self.cfg = cfg
        w, g, drop = cfg.width, cfg.groups, cfg.dropout
        emb_dim = 4 * w
        self.time_mlp = nn.Sequential(nn.Linear(w, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(cfg.num_classes + 1, emb_dim)          # last row: null label
        c_io = cfg.in_channels * cfg.patch ** 2                             # channels after the unshuffle
        self.conv_in = nn.Conv2d(c_io, w, 3, padding=1)

        levels = len(cfg.channel_mult)
        chans, skips = w, [w]
        self.down = nn.ModuleList()
        for i, mult in enumerate(cfg.channel_mult):
            lowest = i == levels - 1
            for _ in range(cfg.num_res_blocks):
                self.down.append(ResBlock(chans, w * mult, emb_dim, g, drop))
                chans = w * mult
                if lowest and cfg.attention:
                    self.down.append(Attention(chans, g))
                skips.append(chans)
            if not lowest:
                self.down.append(Downsample(chans))
                skips.append(chans)
        self.mid = nn.ModuleList([ResBlock(chans, chans, emb_dim, g, drop),
                                  *([Attention(chans, g)] if cfg.attention else []),
                                  ResBlock(chans, chans, emb_dim, g, drop)])
        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(cfg.channel_mult))):
            lowest = i == levels - 1
            for j in range(cfg.num_res_blocks + 1):
                self.up.append(ResBlock(chans + skips.pop(), w * mult, emb_dim, g, drop))
                chans = w * mult
                if lowest and cfg.attention:
                    self.up.append(Attention(chans, g))
            if i > 0:
                self.up.append(Upsample(chans))
        self.norm_out = nn.GroupNorm(g, chans)
        self.conv_out = zero_init(nn.Conv2d(chans, c_io, 3, padding=1))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.cfg.width)) + self.class_emb(y)   # (B, 4w)
        h = self.conv_in(F.pixel_unshuffle(x, self.cfg.patch))                  # (B, w, H/p, W/p)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb)
            if not isinstance(layer, Attention):       # attention refines the skip its ResBlock pushed
                hs.append(h)
            else:
                hs[-1] = h
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            h = layer(h, emb)
        return F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(h))), self.cfg.patch)   # (B, C, H, W)
