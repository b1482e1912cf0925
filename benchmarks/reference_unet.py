"""The plain reference of `bench.py train`: a ContextUnet-style net written here, sized to toydiff's UNet.

It lives outside the package on purpose: toydiff has one UNet; this one exists only to be measured against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from toydiff.errors import UserError


class RefBlock(nn.Module):
    """conv-BN-GELU twice; with `residual`, the input (or the first conv's output) is added and scaled by 1/sqrt 2."""

    def __init__(self, c_in: int, c_out: int, residual: bool = False):
        super().__init__()
        self.residual = residual
        self.a = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.GELU())
        self.b = nn.Sequential(nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        out = self.b(h)
        if not self.residual:
            return out
        return ((x if x.shape == out.shape else h) + out) / 2 ** 0.5


def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))


class ReferenceUNet(nn.Module):
    """A ContextUnet-style baseline (the popular single-file MNIST CFG script's layout): two down blocks with
    max-pool, a pooled bottleneck vector, transposed-conv ups whose features are scaled by a class embedding
    and shifted by an embedding of t / T. The null label is an all-zero one-hot. forward(x, t, y) -> eps."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, n_feat: int, T: int):
        super().__init__()
        if image_size % 4:
            raise UserError(f"the reference net needs an image size divisible by 4, got {image_size}")
        self.num_classes, self.T, f = num_classes, T, n_feat
        self.init = RefBlock(in_channels, f, residual=True)
        self.down1 = nn.Sequential(RefBlock(f, f), nn.MaxPool2d(2))
        self.down2 = nn.Sequential(RefBlock(f, 2 * f), nn.MaxPool2d(2))
        pool = image_size // 4
        self.to_vec = nn.Sequential(nn.AvgPool2d(pool), nn.GELU())
        self.t1, self.t2 = _mlp(1, 2 * f), _mlp(1, f)
        self.c1, self.c2 = _mlp(num_classes, 2 * f), _mlp(num_classes, f)
        self.up0 = nn.Sequential(nn.ConvTranspose2d(2 * f, 2 * f, pool, pool), nn.GroupNorm(8, 2 * f), nn.ReLU())
        self.up1 = nn.Sequential(nn.ConvTranspose2d(4 * f, f, 2, 2), RefBlock(f, f), RefBlock(f, f))
        self.up2 = nn.Sequential(nn.ConvTranspose2d(2 * f, f, 2, 2), RefBlock(f, f), RefBlock(f, f))
        self.out = nn.Sequential(nn.Conv2d(2 * f, f, 3, padding=1), nn.GroupNorm(8, f), nn.ReLU(),
                                 nn.Conv2d(f, in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.init(x)
        d1 = self.down1(x)
        d2 = self.down2(d1)
        hidden = self.to_vec(d2)
        onehot = F.one_hot(y, self.num_classes + 1)[:, :self.num_classes].float()      # null -> all zeros
        tt = (t.float() / self.T)[:, None]
        u1 = self.up0(hidden)
        u2 = self.up1(torch.cat([self.c1(onehot)[..., None, None] * u1 + self.t1(tt)[..., None, None], d2], 1))
        u3 = self.up2(torch.cat([self.c2(onehot)[..., None, None] * u2 + self.t2(tt)[..., None, None], d1], 1))
        return self.out(torch.cat([u3, x], 1))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_reference(target: int, in_channels: int, image_size: int, num_classes: int, T: int) -> ReferenceUNet:
    """The ReferenceUNet whose parameter count is closest to `target` (n_feat a multiple of 8)."""
    def build(f: int) -> ReferenceUNet:
        return ReferenceUNet(in_channels, image_size, num_classes, f, T)

    below = build(8)
    for f in range(16, 1025, 8):                      # the count grows with n_feat: stop at the first one above
        above = build(f)
        if n_params(above) >= target:
            return min(below, above, key=lambda m: abs(n_params(m) - target))
        below = above
    return below
