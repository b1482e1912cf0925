"""Model + guidance + sampler + seeds -> images. The loop every front end (train, sample, figures) shares."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import torch

from .guidance import Guided
from .sampling import SAMPLERS, Step, seeded_generators
from .schedule import NoiseSchedule
from .errors import UserError


def class_rows(num_classes: int, per_class: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(K * per_class,) labels 0,0,..,1,1,..: one row of `per_class` samples per class, the layout of every grid."""
    return torch.arange(num_classes, device=device).repeat_interleave(per_class)


def next_class(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The default negative of toydiff's demos (sample.py, the sweep, the bench): row c avoids (c + 1) mod K."""
    return (labels + 1) % num_classes


def check_steps(steps: int | None, T: int) -> None:
    """Refuse sampling steps above the model's T before anything is written (either sampler)."""
    if steps is not None and steps > T:
        raise UserError(f"--steps {steps} exceeds the model's T = {T}")


def trajectory(guided: Guided, schedule: NoiseSchedule, *,
               seeds: Sequence[int],         # one per sample: sample i depends on seeds[i] alone
               sampler: str = "ddim",        # "ddim" or "ddpm"
               steps: int | None = None,     # None: 50 for DDIM, T for DDPM
               eta: float = 0.0,             # DDIM only
               ) -> Iterator[Step]:
    """Every step of sampling one batch with the guided denoiser."""
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if len(seeds) != len(guided.pos):
        raise ValueError(f"{len(seeds)} seeds for {len(guided.pos)} labels")
    cfg = guided.model.cfg
    shape = (len(seeds), cfg.in_channels, cfg.image_size, cfg.image_size)
    device = guided.pos.device
    kwargs = dict(generator=seeded_generators(seeds), device=device)
    if sampler == "ddim":
        kwargs.update(steps=steps or 50, eta=eta)
    else:
        kwargs.update(steps=steps or schedule.T)
    return SAMPLERS[sampler](guided, shape, schedule, **kwargs)


@torch.no_grad()
def generate(guided: Guided, schedule: NoiseSchedule, *,
             seeds: Sequence[int],
             sampler: str = "ddim",
             steps: int | None = None,
             eta: float = 0.0,
             batch_size: int = 256,        # samples per forward batch (x branches)
             ) -> torch.Tensor:
    """Final samples in [-1, 1], (N, C, H, W), sampled `batch_size` at a time; independent of `batch_size`."""
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    out = []
    for start in range(0, len(seeds), batch_size):
        sl = slice(start, start + batch_size)
        part = dataclasses.replace(guided, pos=guided.pos[sl], ref=guided.ref[:, sl])
        step = None
        for step in trajectory(part, schedule, seeds=seeds[sl], sampler=sampler, steps=steps, eta=eta):
            pass
        out.append(step.x.clamp(-1, 1))
    return torch.cat(out)


def save_grid(images: torch.Tensor, path: str, nrow: int) -> None:
    """Images in [-1, 1], (N, C, H, W) -> a PNG grid with `nrow` images per row (torchvision's save_image)."""
    from torchvision.utils import save_image

    big = images.shape[-1] < 16               # 8x8 digits: upscale so a grid is visible
    x = (images.detach().cpu().float() + 1) / 2
    if big:
        x = torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest")
    save_image(x, path, nrow=nrow, padding=2, pad_value=1.0)
