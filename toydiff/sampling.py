"""Samplers as plain functions of a denoiser `denoise(x_t, t) -> eps_hat` (x_t: (B, C, H, W), t: (B,) int64).

They know nothing of labels or guidance: pass a `guidance.Guided` (or any callable) as `denoise`.
Each `*_trajectory` yields a `Step` per sampling step; `*_sample` returns the final x_0. A `Sampler` is the
one value that carries the settings (which sampler, how many sampling steps, eta, batch size) and their defaults.

Notation: abar_t = alpha_bar[t]; the closed forms (eps <-> x0, the DDPM posterior) live in `schedule.py`.
With `sample_steps` < T both samplers walk a time grid t_1 > ... > t_S of {T-1, ..., 0} (evenly spaced) and use
abar at those points only (Nichol & Dhariwal 2021, sec. 4: respacing). T is the model's number of noise levels
(`DiffusionConfig.timesteps`); `sample_steps` is S, the number of denoiser calls.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .errors import UserError, note
from .schedule import NoiseSchedule, eps_from_x0, posterior, x0_from_eps

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Generators = torch.Generator | Sequence[torch.Generator]
DDIM_DEFAULT_STEPS = 50
DPM_DEFAULT_STEPS = 20                   # DPM-Solver++(2M): DDIM-50's quality in 20 calls (docs/benchmarks.md)
MAX_BATCH = 2 ** 16                      # samples per forward batch


class Step(NamedTuple):
    t: int               # the timestep just denoised
    x: torch.Tensor      # x_{t_prev}: the state after this step; x_0 after the last one
    x0: torch.Tensor     # x0_hat predicted at t (clipped to [-1, 1] if `clip`)
    trace: dict | None = None   # what a stateful denoiser reports at t (`guidance.PosteriorChain`: p_t(k|x_t), s_t)


def seeded_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample (as EDM's StackedRandomGenerator): sample i depends on seeds[i] alone.
    Seeds are taken modulo 2^64 (torch's seed range), so any integer is a seed."""
    return [torch.Generator().manual_seed(int(s) % 2 ** 64) for s in seeds]


def seed_range(first: int, n: int) -> list[int]:
    """Seeds first, first + 1, ..., first + n - 1 (sample i uses first + i), refused unless all fit in int64,
    the type they are recorded with."""
    if not -2 ** 63 <= first <= 2 ** 63 - n:
        raise UserError(f"seed {first}: the {n} seeds from it must fit in 64 bits (-2^63 .. 2^63 - 1)")
    return list(range(first, first + n))


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


def check_sample_steps(sample_steps: int, T: int) -> None:
    """The rule for S: 1 <= S <= T (a grid cannot visit a timestep twice)."""
    if not 1 <= sample_steps <= T:
        raise UserError(f"{sample_steps} sampling steps: must lie in 1..T, and the model's T is {T}")


def time_grid(T: int, sample_steps: int) -> list[int]:
    """The S timesteps a sampler visits, from T-1 down to 0, evenly spaced (S = T gives every t)."""
    check_sample_steps(sample_steps, T)
    return torch.linspace(T - 1, 0, sample_steps, dtype=torch.float64).round().long().tolist()


def _predict(denoise: Denoiser, x: torch.Tensor, t: int, abar: float, clip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """eps_hat and x0_hat at t; if clipped, eps is recomputed from the clipped x0 so the two agree."""
    eps = denoise(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))
    x0 = x0_from_eps(x, eps, abar)
    if clip:
        x0 = x0.clamp(-1, 1)
        eps = eps_from_x0(x, x0, abar)
    return eps, x0


def ddpm_trajectory(denoise: Denoiser, shape: Sequence[int], schedule: NoiseSchedule, *,
                    sample_steps: int | None = None,   # None = T (the full chain)
                    generator: Generators,             # noise for x_T and every step
                    device: torch.device | str = "cpu",
                    clip: bool = True,                 # clip x0_hat to [-1, 1]
                    ) -> Iterator[Step]:
    """Ancestral sampling, Ho et al. 2020 Alg. 2, as x_{t'} ~ q(x_{t'} | x_t, x0_hat) (`schedule.posterior`)."""
    ts = time_grid(schedule.T, sample_steps or schedule.T)
    abar = schedule.alpha_bar.tolist()
    x = randn(shape, generator, device)                                       # x_T ~ N(0, I)
    for i, t in enumerate(ts):
        ab_prev = abar[ts[i + 1]] if i + 1 < len(ts) else 1.0
        _, x0 = _predict(denoise, x, t, abar[t], clip)
        x, var = posterior(x0, x, abar[t], ab_prev)
        if i + 1 < len(ts):                                                   # no noise on the last step
            x = x + var ** 0.5 * randn(shape, generator, device)
        yield Step(t, x, x0, getattr(denoise, "trace", None))


def ddim_trajectory(denoise: Denoiser, shape: Sequence[int], schedule: NoiseSchedule, *,
                    sample_steps: int = DDIM_DEFAULT_STEPS,
                    eta: float = 0.0,                  # 0 = deterministic DDIM; 1 = DDPM-like noise
                    generator: Generators,
                    device: torch.device | str = "cpu",
                    clip: bool = True,
                    ) -> Iterator[Step]:
    """DDIM, Song et al. 2021, eq. (12) with sigma from eq. (16):

        x_{t'} = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - sigma^2) eps_hat + sigma z
        sigma  = eta sqrt((1 - abar_{t'}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t'})
    """
    ts = time_grid(schedule.T, sample_steps)
    abar = schedule.alpha_bar.tolist()
    x = randn(shape, generator, device)
    for i, t in enumerate(ts):
        ab_t = abar[t]
        ab_prev = abar[ts[i + 1]] if i + 1 < len(ts) else 1.0
        eps, x0 = _predict(denoise, x, t, ab_t, clip)
        sigma = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)) ** 0.5
        x = ab_prev ** 0.5 * x0 + max(1 - ab_prev - sigma ** 2, 0.0) ** 0.5 * eps
        if sigma > 0 and i + 1 < len(ts):
            x = x + sigma * randn(shape, generator, device)
        yield Step(t, x, x0, getattr(denoise, "trace", None))


def dpmpp_2m_trajectory(denoise: Denoiser, shape: Sequence[int], schedule: NoiseSchedule, *,
                        sample_steps: int = DPM_DEFAULT_STEPS,
                        generator: Generators,
                        device: torch.device | str = "cpu",
                        clip: bool = True,
                        ) -> Iterator[Step]:
    """DPM-Solver++(2M), Lu et al. 2022 (arXiv 2211.01095), Alg. 2: a second-order multistep solver of the
    probability-flow ODE in the data prediction x0_hat, one denoiser call per step (deterministic, like DDIM).

    With alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t), lambda_t = log(alpha_t / sigma_t) and h = lambda_{t'} -
    lambda_t, a step from t to t' is

        x_{t'} = (sigma_{t'} / sigma_t) x_t - alpha_{t'} (e^{-h} - 1) D,   D = (1 + 1/(2r)) x0_t - 1/(2r) x0_prev

    with r = h_prev / h (the ratio of the last two steps in lambda). D = x0_t (first order: exactly DDIM with eta 0)
    on the first step, and on the last, which ends at abar = 1 (sigma = 0) and returns D = x0_hat itself: lower
    order there keeps few-step sampling stable (as in diffusers' `lower_order_final`). Its S calls sit on the first
    S points of the even grid of S + 1 from T-1 to 0: a call at t = 0 (abar ~ 1) would denoise a clean image, and
    the 2M step into it, with h far larger than the steps before, overshoots (on Gaussian data at S = 20 the grid
    with t = 0 lands 26x farther from the ODE's exact end). Guidance is a function of the denoiser, so every
    guidance mode runs through it unchanged.
    """
    check_sample_steps(sample_steps, schedule.T)
    ts = time_grid(schedule.T, min(sample_steps + 1, schedule.T))[:sample_steps]
    abar = schedule.alpha_bar.tolist()
    lam = [0.5 * math.log(a / (1 - a)) for a in abar]                     # lambda_t = log(alpha_t / sigma_t)
    x = randn(shape, generator, device)
    x0_prev = h_prev = None
    for i, t in enumerate(ts):
        _, x0 = _predict(denoise, x, t, abar[t], clip)
        if i + 1 == len(ts):                                              # to abar = 1: x_0 = x0_hat
            x = x0
        else:
            t_next = ts[i + 1]
            h = lam[t_next] - lam[t]
            d = x0 if x0_prev is None else x0 + (x0 - x0_prev) * h / (2 * h_prev)        # 1/(2r) = h/(2 h_prev)
            x = ((1 - abar[t_next]) / (1 - abar[t])) ** 0.5 * x - abar[t_next] ** 0.5 * math.expm1(-h) * d
            x0_prev, h_prev = x0, h
        yield Step(t, x, x0, getattr(denoise, "trace", None))


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


SAMPLERS = {"ddim": ddim_trajectory, "ddpm": ddpm_trajectory, "dpm++2m": dpmpp_2m_trajectory}


@dataclass(frozen=True)
class Sampler:
    """How to sample, as one value built (and checked) once, before anything is written.

    kind:          "ddim" (Song et al. 2021), "ddpm" (ancestral, Ho et al. 2020) or "dpm++2m" (DPM-Solver++(2M),
                   Lu et al. 2022: second order, deterministic)
    sample_steps:  S denoiser calls; None = the default (DDIM: 50, DPM-Solver++: 20, either capped at T; DDPM: T),
                   see `resolve`
    eta:           DDIM's noise in [0, 1] (0 deterministic, 1 DDPM-like, eq. 16); the others have no eta, so it
                   stays 0
    batch_size:    samples per forward batch (times the guidance branches); results do not depend on it
    """
    kind: str = "ddim"
    sample_steps: int | None = None
    eta: float = 0.0
    batch_size: int = 256
    clip: bool = True

    def __post_init__(self):
        if self.kind not in SAMPLERS:
            raise UserError(f"unknown sampler {self.kind!r}; choose one of {', '.join(SAMPLERS)}")
        if self.sample_steps is not None and self.sample_steps < 1:
            raise UserError(f"sampling steps must be >= 1, got {self.sample_steps}")
        if not 0 <= self.eta <= 1:                       # NaN fails too; eta > 1 asks for more noise than x_t' has
            raise UserError(f"eta must lie in [0, 1] (0 deterministic DDIM, 1 DDPM-like), got {self.eta}")
        if self.kind != "ddim" and self.eta != 0:
            raise UserError(f"eta {self.eta:g} applies to DDIM only; {self.kind.upper()} has no eta")
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise UserError(f"batch size must lie in 1..{MAX_BATCH}, got {self.batch_size}")

    def resolve(self, T: int) -> Sampler:
        """This sampler with S fixed for a model with T noise levels. An explicit S above T is refused; the DDIM
        default of 50 becomes T with a note when T < 50."""
        if self.sample_steps is not None:
            check_sample_steps(self.sample_steps, T)
            return self
        if self.kind == "ddpm":
            return dataclasses.replace(self, sample_steps=T)
        default = DDIM_DEFAULT_STEPS if self.kind == "ddim" else DPM_DEFAULT_STEPS
        if T < default:
            note(f"the model has T = {T} noise levels, fewer than {self.kind.upper()}'s default {default} sampling "
                 f"steps: sampling with {T}")
        return dataclasses.replace(self, sample_steps=min(default, T))

    @property
    def label(self) -> str:
        """e.g. "DDIM-50", "DDIM-50 (eta 1)", "DDPM-1000", "DPM++2M-20" (of a resolved sampler)."""
        return f"{self.kind.upper()}-{self.sample_steps}" + (f" (eta {self.eta:g})" if self.eta else "")

    def trajectory(self, denoise: Denoiser, shape: Sequence[int], schedule: NoiseSchedule, *,
                   generator: Generators, device: torch.device | str = "cpu") -> Iterator[Step]:
        """Every step of this sampler on `denoise` (see `ddim_trajectory`, `ddpm_trajectory`, `dpmpp_2m_trajectory`)."""
        kwargs = dict(sample_steps=self.resolve(schedule.T).sample_steps, generator=generator, device=device,
                      clip=self.clip)
        if self.kind == "ddim":
            kwargs["eta"] = self.eta
        return SAMPLERS[self.kind](denoise, shape, schedule, **kwargs)
