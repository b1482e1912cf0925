"""The forward (noising) process and its closed forms. Pure tensor maths, no nn.Module.

Notation (Ho et al. 2020, "DDPM"):
    beta_t            noise added at step t,       alpha_t = 1 - beta_t
    abar_t            prod_{s<=t} alpha_s          (`alpha_bar`; t = 0 is the least noise)
    q(x_t | x_0)      = N(sqrt(abar_t) x_0, (1 - abar_t) I)                         eq. (4)
    q(x_{t'} | x_t, x_0) = N(mu~, beta~ I), t' < t                                   eq. (6), (7)

The closed forms are written once, as functions of abar (a float, or a tensor that broadcasts over the batch):
the samplers call them with the abar of the two timesteps of a step, `NoiseSchedule` with per-sample t.
"""

from __future__ import annotations

import math

import torch

from .errors import UserError

Abar = float | torch.Tensor


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, abar: Abar) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)                         eq. (15)"""
    return (x_t - (1 - abar) ** 0.5 * eps) / abar ** 0.5


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, abar: Abar) -> torch.Tensor:
    """eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t), the inverse of `x0_from_eps`."""
    return (x_t - abar ** 0.5 * x0) / (1 - abar) ** 0.5


def posterior(x0: torch.Tensor, x_t: torch.Tensor, abar_t: Abar, abar_prev: Abar) -> tuple[torch.Tensor, Abar]:
    """Mean mu~ and variance beta~ of q(x_{t'} | x_t, x_0) for t' < t, eq. (7) with beta := 1 - abar_t / abar_t'.

    With t' = t - 1 this beta is beta_t and the formula is the paper's; with t' further back it is the posterior of
    a respaced chain (Nichol & Dhariwal 2021, sec. 4). abar_prev = 1 is the last step, to x_0.
        mu~   = beta sqrt(abar_t') / (1 - abar_t) x_0 + (1 - abar_t') sqrt(1 - beta) / (1 - abar_t) x_t
        beta~ = beta (1 - abar_t') / (1 - abar_t)
    """
    beta = 1 - abar_t / abar_prev
    c0 = beta * abar_prev ** 0.5 / (1 - abar_t)
    ct = (1 - abar_prev) * (1 - beta) ** 0.5 / (1 - abar_t)
    return c0 * x0 + ct * x_t, beta * (1 - abar_prev) / (1 - abar_t)


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al. 2020: betas linear in t, rescaled so any T gives the same curve as T = 1000."""
    scale = 1000 / T
    return torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. (17): abar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) pi/2)."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


class NoiseSchedule:
    """Diffusion schedule with T steps. All tables are float64 on the CPU; `_at` gathers float32 on x's device."""

    def __init__(self, kind: str = "cosine", timesteps: int = 1000):
        if timesteps < 1:
            raise UserError(f"timesteps must be >= 1, got {timesteps}")
        if kind == "cosine":
            betas = cosine_betas(timesteps)
        elif kind == "linear":
            betas = linear_betas(timesteps)
        else:
            raise UserError(f"unknown schedule {kind!r}; choose cosine or linear")
        self.kind, self.T = kind, timesteps
        self._device_tables: dict = {}
        self.betas = betas                                                    # (T,)
        self.alphas = 1 - betas
        self.alpha_bar = torch.cumprod(self.alphas, 0)                        # abar_t

    @classmethod
    def from_config(cls, cfg) -> "NoiseSchedule":
        return cls(cfg.schedule, cfg.timesteps)

    def _at(self, table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """table[t] as float32 on x's device, shaped (B, 1, ..., 1) to broadcast over x: (B, 1, 1, 1) for images
        (B, C, H, W), (B, 1) for vectors (B, D)."""
        key = (id(table), x.device)
        if key not in self._device_tables:               # one copy per device, so indexing never syncs
            self._device_tables[key] = table.to(device=x.device, dtype=torch.float32)
        t = torch.as_tensor(t, device=x.device).long().reshape(-1)
        return self._device_tables[key][t].reshape(-1, *([1] * (x.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps                     eq. (4)"""
        ab = self._at(self.alpha_bar, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def eps_to_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """`x0_from_eps` at per-sample timesteps t (B,)."""
        return x0_from_eps(x_t, eps, self._at(self.alpha_bar, t, x_t))

    def x0_to_eps(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """`eps_from_x0` at per-sample timesteps t (B,)."""
        return eps_from_x0(x_t, x0, self._at(self.alpha_bar, t, x_t))
