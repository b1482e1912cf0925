"""A small class-conditional MLP predicting eps(x_t, t, y) for vectors: the learned denoiser of the 2D playground.

    emb = MLP(sinusoid(t)) + E[y]                                  (as the UNet; E has num_classes + 1 rows, the
    h   = W_in x_t                                                  last the null label label dropout trains)
    h   = h + W_2 SiLU((W_1 SiLU(LN(h))) (1 + scale) + shift)     per block, (scale, shift) = W_e SiLU(emb)
    eps = W_out SiLU(LN(h))                                        (W_out zero-initialised: starts at eps = 0)

Shapes: x (B, D), t (B,) int64, y (B,) int64 -> eps (B, D), D = cfg.in_channels; `cfg.width` hidden units,
`cfg.num_res_blocks` blocks. Same forward as `unet.UNet`, so training, checkpoints, guidance and samplers are shared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig, check_model_config
from .unet import timestep_embedding, zero_init


class Block(nn.Module):
    """h + W_2 SiLU((W_1 SiLU(LN(h))) (1 + scale) + shift), with (scale, shift) from the embedding."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(width, 2 * width)                                   # -> (scale, shift)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = zero_init(nn.Linear(width, width))                            # block starts as identity

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.emb(F.silu(emb)).chunk(2, dim=1)                     # (B, w) each
        a = self.fc1(F.silu(self.norm(h))) * (1 + scale) + shift
        return h + self.fc2(self.dropout(F.silu(a)))


class MLP(nn.Module):
    """eps_theta(x_t, t, y): (B, D), (B,) int64, (B,) int64 -> (B, D); `y == cfg.num_classes` is the null label."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        check_model_config(cfg)
        self.cfg = cfg
        w = cfg.width
        self.time_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.class_emb = nn.Embedding(cfg.num_classes + 1, w)                    # last row: null label
        self.inp = nn.Linear(cfg.in_channels, w)
        self.blocks = nn.ModuleList([Block(w, cfg.dropout) for _ in range(cfg.num_res_blocks)])
        self.norm_out = nn.LayerNorm(w)
        self.out = zero_init(nn.Linear(w, cfg.in_channels))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.cfg.width)) + self.class_emb(y)   # (B, w)
        h = self.inp(x)                                                                   # (B, w)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.norm_out(h)))                                         # (B, D)
