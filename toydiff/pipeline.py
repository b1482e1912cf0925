"""Model + guidance + sampler + seeds -> images. The loop every front end (train, sample, figures) shares."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .guidance import Guided
from .files import atomic_write
from .sampling import Sampler, Step, seeded_generators
from .errors import UserError
from .schedule import NoiseSchedule


def class_rows(num_classes: int, per_class: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(K * per_class,) labels 0,0,..,1,1,..: one row of `per_class` samples per class, the layout of every grid."""
    return torch.arange(num_classes, device=device).repeat_interleave(per_class)


def next_class(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The default negative of toydiff's demos (sample.py, the figures' grids, the sweep, the benchmarks): row c
    avoids (c + 1) mod K."""
    return (labels + 1) % num_classes


def quota_labels(prior, n: int, *, removed: Sequence[int] = ()) -> torch.Tensor:
    """(n,) labels in class order whose counts follow `prior` (K,) with the `removed` classes dropped and the rest
    renormalised, as exact quotas (largest remainder): the label histogram is the target itself, not a draw from it."""
    p = torch.as_tensor(prior, dtype=torch.float64).clone()
    p[list(removed)] = 0
    if not p.sum() > 0:
        raise UserError("removing every class leaves no class to sample")
    quota = p / p.sum() * n
    counts = quota.floor().long()
    counts[torch.argsort(quota - counts, descending=True, stable=True)[: n - int(counts.sum())]] += 1
    return torch.arange(len(p)).repeat_interleave(counts)


MAX_SAMPLES = 100_000                   # per set: an N beyond this is a typo, not a study


def check_count(n: int, what: str = "samples") -> int:
    """The rule for how many samples one set may hold: 1..MAX_SAMPLES (they are kept in memory)."""
    if not 1 <= n <= MAX_SAMPLES:
        raise UserError(f"{n} {what} asked for one set; it must lie in 1..{MAX_SAMPLES}")
    return n


def trajectory(guided: Guided, schedule: NoiseSchedule, sampler: Sampler, *,
               seeds: Sequence[int],         # one per sample: sample i depends on seeds[i] alone
               track: bool = False,          # also carry p_t(k | x_t) under static guidance (into Step.trace)
               ) -> Iterator[Step]:
    """Every step of sampling one batch (all of `guided`'s samples) with the guided denoiser, fresh for this chain
    (posterior-aware guidance carries state from step to step)."""
    if len(seeds) != len(guided.pos):
        raise ValueError(f"{len(seeds)} seeds for {len(guided.pos)} labels")
    shape = (len(seeds), *guided.model.cfg.data_shape)     # (B, C, H, W) images, (B, D) vectors
    return sampler.trajectory(guided.chain(schedule.alpha_bar, track=track), shape, schedule,
                              generator=seeded_generators(seeds), device=guided.pos.device)


@torch.no_grad()
def generate(guided: Guided, schedule: NoiseSchedule, sampler: Sampler, *, seeds: Sequence[int]) -> torch.Tensor:
    """Final samples in [-1, 1], (N, C, H, W), drawn `sampler.batch_size` at a time; independent of the batching."""
    sampler = sampler.resolve(schedule.T)
    out = []
    for start in range(0, len(seeds), sampler.batch_size):
        sl = slice(start, start + sampler.batch_size)
        step = None
        for step in trajectory(guided.take(sl), schedule, sampler, seeds=seeds[sl]):
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
    atomic_write(path, lambda f: save_image(x, f, format="png", nrow=nrow, padding=2, pad_value=1.0))
