"""Samplers as plain functions of a denoiser `denoise(x_t, t) -> eps_hat` (x_t: (B, C, H, W), t: (B,) int64).

They know nothing of labels or guidance: pass a `guidance.Guided` (or any callable) as `denoise`.
Each `*_trajectory` yields a `Step` per sampling step; `*_sample` returns the final x_0.

Notation: abar_t = alpha_bar[t];  x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t).
With `steps` < T both samplers walk a subsequence t_1 > ... > t_S of {T-1, ..., 0} (evenly spaced) and use
abar at those points only (Nichol & Dhariwal 2021, sec. 4: respacing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import torch

from .errors import UserError
from .schedule import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Generators = torch.Generator | Sequence[torch.Generator]


class Step(NamedTuple):
    t: int               # the timestep just denoised
    x: torch.Tensor      # x_{t_prev}: the state after this step; x_0 after the last one
    x0: torch.Tensor     # x0_hat predicted at t (clipped to [-1, 1] if `clip`)


def seeded_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample (as EDM's StackedRandomGenerator): sample i depends on seeds[i] alone."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def randn(shape: Sequence[int], generator: Generators, device: torch.device | str) -> torch.Tensor:
    """Standard normal noise drawn on the CPU (identical on every device), then moved to `device`.

    `generator` is one torch.Generator for the whole batch, or a sequence with one per sample.
    """
    if isinstance(generator, torch.Generator):
        z = torch.randn(tuple(shape), generator=generator)
    else:
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        z = torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in generator])
    return z.to(device)


def timesteps(T: int, steps: int) -> list[int]:
    """`steps` timesteps from T-1 down to 0, evenly spaced (steps = T gives every t)."""
    if not 1 <= steps <= T:
        raise UserError(f"steps must be between 1 and T = {T}, got {steps}")
    return torch.linspace(T - 1, 0, steps, dtype=torch.float64).round().long().tolist()


def _predict_x0(denoise: Denoiser, x: torch.Tensor, t: int, abar: float, clip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """eps_hat and x0_hat at t; if clipped, eps is recomputed from the clipped x0 so the two agree."""
    eps = denoise(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))
    x0 = (x - (1 - abar) ** 0.5 * eps) / abar ** 0.5
    if clip:
        x0 = x0.clamp(-1, 1)
        eps = (x - abar ** 0.5 * x0) / (1 - abar) ** 0.5
    return eps, x0


def ddpm_trajectory(denoise: Denoiser, shape: Sequence[int], schedule: NoiseSchedule, *,
                    steps: int | None = None,      # None = T (the full chain)
                    generator: Generators,         # noise for x_T and every step
                    device: torch.device | str = "cpu",
                    clip: bool = True,             # clip x0_hat to [-1, 1]
                    ) -> Iterator[Step]:
    """Ancestral sampling, Ho et al. 2020 Alg. 2, as x_{t'} ~ q(x_{t'} | x_t, x0_hat) (eq. 6-7).

    On a respaced chain beta_t := 1 - abar_t / abar_{t'} for consecutive sampled timesteps t > t'.
    """
    ts = timesteps(schedule.T, steps or schedule.T)
    abar = schedule.alpha_bar.tolist()
    x = randn(shape, generator, device)                                       # x_T ~ N(0, I)
    for i, t in enumerate(ts):
        ab_t = abar[t]
        ab_prev = abar[ts[i + 1]] if i + 1 < len(ts) else 1.0
        beta = 1 - ab_t / ab_prev
        _, x0 = _predict_x0(denoise, x, t, ab_t, clip)
        # posterior mean mu~ = c0 x0 + ct x_t, variance beta~, eq. (7)
        c0 = beta * ab_prev ** 0.5 / (1 - ab_t)
        ct = (1 - ab_prev) * (1 - beta) ** 0.5 / (1 - ab_t)
        var = beta * (1 - ab_prev) / (1 - ab_t)
        x = c0 * x0 + ct * x
        if i + 1 < len(ts):                                                   # no noise on the last step
            x = x + var ** 0.5 * randn(shape, generator, device)
        yield Step(t, x, x0)


def ddim_trajectory(denoise: Denoiser, shape: Sequence[int], schedule: NoiseSchedule, *,
                    steps: int = 50,
                    eta: float = 0.0,              # 0 = deterministic DDIM; 1 = DDPM-like noise
                    generator: Generators,
                    device: torch.device | str = "cpu",
                    clip: bool = True,
                    ) -> Iterator[Step]:
    """DDIM, Song et al. 2021, eq. (12) with sigma from eq. (16):

        x_{t'} = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - sigma^2) eps_hat + sigma z
        sigma  = eta sqrt((1 - abar_{t'}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t'})
    """
    if eta < 0:
        raise UserError(f"eta must be >= 0, got {eta}")
    ts = timesteps(schedule.T, steps)
    abar = schedule.alpha_bar.tolist()
    x = randn(shape, generator, device)
    for i, t in enumerate(ts):
        ab_t = abar[t]
        ab_prev = abar[ts[i + 1]] if i + 1 < len(ts) else 1.0
        eps, x0 = _predict_x0(denoise, x, t, ab_t, clip)
        sigma = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)) ** 0.5
        x = ab_prev ** 0.5 * x0 + max(1 - ab_prev - sigma ** 2, 0.0) ** 0.5 * eps
        if sigma > 0 and i + 1 < len(ts):
            x = x + sigma * randn(shape, generator, device)
        yield Step(t, x, x0)


def _last(trajectory: Iterator[Step]) -> torch.Tensor:
    step = None
    for step in trajectory:
        pass
    return step.x


def ddpm_sample(denoise: Denoiser, shape: Sequence[int], schedule: NoiseSchedule, **kwargs) -> torch.Tensor:
    """Final x_0 of `ddpm_trajectory` (same keyword arguments)."""
    return _last(ddpm_trajectory(denoise, shape, schedule, **kwargs))


def ddim_sample(denoise: Denoiser, shape: Sequence[int], schedule: NoiseSchedule, **kwargs) -> torch.Tensor:
    """Final x_0 of `ddim_trajectory` (same keyword arguments)."""
    return _last(ddim_trajectory(denoise, shape, schedule, **kwargs))


SAMPLERS = {"ddpm": ddpm_trajectory, "ddim": ddim_trajectory}
