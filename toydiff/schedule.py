"""The forward (noising) process and its closed forms. Pure tensor maths, no nn.Module.

Notation (Ho et al. 2020, "DDPM"):
    beta_t            noise added at step t,       alpha_t = 1 - beta_t
    abar_t            prod_{s<=t} alpha_s          (`alpha_bar`; t = 0 is the least noise)
    q(x_t | x_0)      = N(sqrt(abar_t) x_0, (1 - abar_t) I)                         eq. (4)
    q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I)                                     eq. (6), (7)
"""

from __future__ import annotations

import math

import torch

from .errors import UserError


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
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        # q(x_{t-1} | x_t, x_0), eq. (7): beta~_t and the two coefficients of mu~_t
        self.posterior_var = betas * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar)
        self.posterior_coef_x0 = betas * self.alpha_bar_prev.sqrt() / (1 - self.alpha_bar)
        self.posterior_coef_xt = (1 - self.alpha_bar_prev) * self.alphas.sqrt() / (1 - self.alpha_bar)

    @classmethod
    def from_config(cls, cfg) -> "NoiseSchedule":
        return cls(cfg.schedule, cfg.timesteps)

    def _at(self, table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """table[t] as float32 on x's device, shaped (B, 1, 1, 1) to broadcast over an image batch."""
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
        """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)              eq. (15)"""
        ab = self._at(self.alpha_bar, t, x_t)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def x0_to_eps(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)"""
        ab = self._at(self.alpha_bar, t, x_t)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean mu~_t(x_t, x_0) and variance beta~_t of q(x_{t-1} | x_t, x_0), eq. (7)."""
        mean = self._at(self.posterior_coef_x0, t, x_t) * x0 + self._at(self.posterior_coef_xt, t, x_t) * x_t
        return mean, self._at(self.posterior_var, t, x_t)
