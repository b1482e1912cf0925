"""Guidance: one formula, several choices of reference.

    eps = eps_ref + s * (eps_pos - eps_ref)                      (Ho & Salimans 2022, eq. 6, with w = s - 1)

    s = 1: no guidance (eps_pos);  s = 0: pure eps_ref;  s > 1: extrapolate away from the reference.

What `ref` is decides what guidance does:
    CFG                 pos = class c, ref = null label
    negative class      pos = c,       ref = class k        (the negative prompt *replaces* the uncond)
    several negatives   pos = c,       ref = sum_j a_j eps(k_j),  a_j >= 0 normalised to sum 1
    removal             pos = null,    ref = class k        ("anything but k")
    autoguidance        pos = c,       ref = c through a worse model (Karras et al. 2024)
    interval            s applies only for t in [t_lo, t_hi], s = 1 elsewhere (Kynkäänniemi et al. 2024)
    rescale (phi)       match the std of the guided prediction to eps_pos (Lin et al. 2023, Alg. 2)

The formula is linear, so it holds identically for x0-predictions.
All branches that share a model go through one forward of a concatenated batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import UserError


def combine(eps_pos: torch.Tensor, eps_ref: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """eps_ref + s (eps_pos - eps_ref). Guidance scale s; Ho & Salimans' w = s - 1."""
    return eps_ref + scale * (eps_pos - eps_ref)


def rescale_std(guided: torch.Tensor, eps_pos: torch.Tensor, phi: float) -> torch.Tensor:
    """Lin et al. 2023, Alg. 2: x = phi * guided * std(pos) / std(guided) + (1 - phi) * guided, std per sample."""
    if phi == 0:
        return guided
    dims = tuple(range(1, guided.dim()))
    ratio = eps_pos.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp_min(1e-12)
    return phi * guided * ratio + (1 - phi) * guided


def batched_forward(model: nn.Module, x: torch.Tensor, t: torch.Tensor,
                    labels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """eps(x, t, y) for each label tensor y in `labels` (each (B,)), through ONE forward of a (len * B) batch."""
    n = len(labels)
    eps = model(x.repeat(n, *([1] * (x.dim() - 1))), t.repeat(n), torch.cat(list(labels)))
    return list(eps.chunk(n))


def normalise_weights(weights: Sequence[float]) -> torch.Tensor:
    """a_j / sum_j a_j as float32, normalised in float64 (float32 would overflow the sum of weights near 3e38)."""
    w = torch.as_tensor(list(weights), dtype=torch.float64)
    if w.numel() == 0 or not torch.isfinite(w).all() or (w <= 0).any():
        raise UserError(f"negative weights must be finite and > 0, got {list(weights)}")
    a = (w / w.sum()).float()
    if (a == 0).any():
        raise UserError(f"negative weights {list(weights)} span more than float32 can carry (a normalised weight "
                        "rounds to 0); use weights of similar size")
    return a


def check_classes(labels: torch.Tensor | Sequence[int], num_classes: int, *, what: str = "classes",
                  null_allowed: bool = False) -> None:
    """The rule for labels: classes 0..K-1, plus the null label K where `null_allowed` (pos of removal)."""
    labels = torch.as_tensor(labels)
    top = num_classes if null_allowed else num_classes - 1
    if labels.numel() and (labels.min() < 0 or labels.max() > top):
        none = f" (or {num_classes} = none)" if null_allowed else ""
        raise UserError(f"{what} must lie in 0..{num_classes - 1}{none}, got {labels.unique().tolist()}")


MAX_SCALE = 1e4            # |s| beyond this pushes eps past anything float32 samples can use


def check_scale(scale: float) -> float:
    """The rule for s: a finite number within +-MAX_SCALE (s = 1 none; Ho & Salimans' w = s - 1)."""
    if not math.isfinite(float(scale)) or abs(float(scale)) > MAX_SCALE:
        raise UserError(f"guidance scale s must be a finite number in [-{MAX_SCALE:g}, {MAX_SCALE:g}], got {scale}")
    return float(scale)


def check_interval(interval: tuple[int, int] | None, T: int | None = None) -> None:
    """The rule for a guidance interval [t_lo, t_hi]: t_lo <= t_hi, both timesteps of the model (0..T-1) when T is
    known; an interval outside them would silently mean no guidance at all."""
    if interval is None:
        return
    lo, hi = interval
    if lo > hi:
        raise UserError(f"guidance interval must have t_lo <= t_hi, got {tuple(interval)}")
    if T is not None and not 0 <= lo <= hi <= T - 1:
        raise UserError(f"guidance interval {lo}:{hi} must lie within the model's timesteps 0..{T - 1}")


@dataclass
class Guided:
    """A guided denoiser `(x_t, t) -> eps` for the samplers (see the module docstring for the formula).

    pos:         (B,) positive labels (`null` for removal).
    ref:         (J, B) reference labels: null for CFG, negatives k_j, or `pos` again for autoguidance.
    ref_weights: (J,) a_j >= 0 summing to 1.
    scale:       s (s = 1 none; Ho & Salimans' w = s - 1).
    ref_model:   model for the reference branches (autoguidance); None = `model`.
    interval:    (t_lo, t_hi) inclusive: guide only there, s = 1 elsewhere; None = every t.
    rescale:     phi of Lin et al. 2023; 0 = off.
    """

    model: nn.Module
    pos: torch.Tensor = field(metadata={"sample_dim": 0})
    ref: torch.Tensor = field(metadata={"sample_dim": 1})
    ref_weights: torch.Tensor
    scale: float
    ref_model: nn.Module | None = None
    interval: tuple[int, int] | None = None
    rescale: float = 0.0

    def take(self, index: slice | torch.Tensor) -> Guided:
        """The same denoiser for the samples `index` only: every per-sample field (marked `sample_dim`) is
        indexed along its sample dimension."""
        return dataclasses.replace(self, **{
            f.name: getattr(self, f.name)[(slice(None),) * f.metadata["sample_dim"] + (index,)]
            for f in dataclasses.fields(self) if "sample_dim" in f.metadata})

    def negative_classes(self) -> torch.Tensor:
        """(J, B) the negative classes k_j of each sample, -1 where the reference is not a class (the null label
        of CFG, or the positive label through a worse model in autoguidance)."""
        if self.ref_model is not None:
            return torch.full_like(self.ref, -1)
        return torch.where(self.ref == self.model.cfg.num_classes, -1, self.ref)

    def scales(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample s: `scale` inside the interval, 1 outside. (B,)"""
        s = torch.full(t.shape, float(self.scale), device=t.device)
        if self.interval is not None:
            lo, hi = self.interval
            s = torch.where((t >= lo) & (t <= hi), s, torch.ones_like(s))
        return s

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = self.scales(t)
        if bool((s == 1).all()):                      # no guidance anywhere in the batch: one branch suffices
            return self.model(x, t, self.pos)
        refs = list(self.ref)
        if self.ref_model is None:
            eps_pos, *eps_refs = batched_forward(self.model, x, t, [self.pos, *refs])
        else:                                         # two models cannot share a forward
            eps_pos = self.model(x, t, self.pos)
            eps_refs = batched_forward(self.ref_model, x, t, refs)
        w = self.ref_weights.to(x.device, x.dtype)
        eps_ref = sum(w[j] * e for j, e in enumerate(eps_refs))      # sum_j a_j eps(k_j)
        guided = combine(eps_pos, eps_ref, s.to(x.dtype).view(-1, *([1] * (x.dim() - 1))))
        return rescale_std(guided, eps_pos, self.rescale)


def guide(model: nn.Module, pos: torch.Tensor, *,
          scale: float,                                  # s; Ho & Salimans' w = s - 1
          negatives: Sequence[tuple[int | torch.Tensor, float]] = (),   # (k_j, a_j); k_j an int or (B,) labels
          ref_model: nn.Module | None = None,            # autoguidance: ref = same labels through this model
          interval: tuple[int, int] | None = None,
          rescale: float = 0.0,
          ) -> Guided:
    """Build the `Guided` denoiser for labels `pos` (B,), where `model.cfg.num_classes` is the null label.

    No negatives: ref = null (CFG), or ref = pos through `ref_model` (autoguidance).
    Negatives: ref = sum_j a_j eps(k_j) with the a_j normalised to 1.
    """
    null = model.cfg.num_classes
    pos = torch.as_tensor(pos, dtype=torch.long)
    check_classes(pos, null, what="class labels", null_allowed=True)
    scale = check_scale(scale)
    if negatives and ref_model is not None:
        raise UserError("autoguidance's reference is the positive label through the worse model; "
                        "it does not combine with negative classes")
    if negatives:
        labels, weights = zip(*negatives)
        ref = torch.stack([torch.as_tensor(k, dtype=torch.long).expand(pos.shape) for k in labels])   # (J, B)
        check_classes(ref, null, what="negative classes")
        ref_weights = normalise_weights(weights)
    else:
        ref = (pos if ref_model is not None else torch.full_like(pos, null))[None]      # (1, B)
        ref_weights = torch.ones(1)
    check_interval(interval)
    if not 0 <= rescale <= 1:                         # NaN fails too
        raise UserError(f"rescale phi must lie in [0, 1], got {rescale}")
    device = next(model.parameters()).device
    return Guided(model, pos.to(device), ref.to(device), ref_weights, scale, ref_model, interval, rescale)
