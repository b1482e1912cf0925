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
    posterior-aware     the scale per sample and step from p_t(k | x_t) (Koulischer et al. 2025), `PosteriorChain`

The formula is linear, so it holds identically for x0-predictions.
All branches that share a model go through one forward of a concatenated batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import UserError
from .schedule import posterior, x0_from_eps


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
    dynamic:     lambda of posterior-aware guidance (`PosteriorChain`; 1 = exact removal), with s as the ceiling
                 of the scale; None = static guidance.
    tracker:     how p_t(k | x_t) is carried: "two" (from the branches guidance computes anyway) or "all" (every
                 class in the batched forward, normalised over classes).
    """

    model: nn.Module
    pos: torch.Tensor = field(metadata={"sample_dim": 0})
    ref: torch.Tensor = field(metadata={"sample_dim": 1})
    ref_weights: torch.Tensor
    scale: float
    ref_model: nn.Module | None = None
    interval: tuple[int, int] | None = None
    rescale: float = 0.0
    dynamic: float | None = None
    tracker: str = "two"

    def chain(self, alpha_bar: torch.Tensor, *, track: bool = False) -> Callable:
        """The denoiser for ONE sampling chain. Static guidance is stateless and is its own denoiser; posterior-aware
        guidance (or `track`: static guidance that also reports p_t(k | x_t)) carries the posterior from step to step
        in a fresh `PosteriorChain`. alpha_bar: the schedule's abar_t, (T,)."""
        if self.dynamic is None and not track:
            return self
        return PosteriorChain(self, alpha_bar)

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
        eps_pos, *eps_refs = self.branches(x, t)
        return self.static(eps_pos, eps_refs, s)

    def branches(self, x: torch.Tensor, t: torch.Tensor, extra: Sequence[torch.Tensor] = ()) -> list[torch.Tensor]:
        """[eps_pos, eps(k_1), ..., eps(k_J), eps(extra labels)...], the model's branches in one batched forward."""
        refs = list(self.ref)
        if self.ref_model is None:
            return batched_forward(self.model, x, t, [self.pos, *refs, *extra])
        eps_pos, *eps_extra = batched_forward(self.model, x, t, [self.pos, *extra])   # two models cannot share
        return [eps_pos, *batched_forward(self.ref_model, x, t, refs), *eps_extra]     # a forward

    def static(self, eps_pos: torch.Tensor, eps_refs: Sequence[torch.Tensor], s: torch.Tensor) -> torch.Tensor:
        """eps_ref + s (eps_pos - eps_ref) with eps_ref = sum_j a_j eps(k_j), s (B,) per sample; then rescale."""
        w = self.ref_weights.to(eps_pos.device, eps_pos.dtype)
        eps_ref = sum(w[j] * e for j, e in enumerate(eps_refs))      # sum_j a_j eps(k_j)
        guided = combine(eps_pos, eps_ref, s.to(eps_pos.dtype).view(-1, *([1] * (eps_pos.dim() - 1))))
        return rescale_std(guided, eps_pos, self.rescale)


TRACKERS = ("two", "all")


class PosteriorChain:
    """Posterior-aware ("dynamic") negative guidance along ONE sampling chain (Koulischer et al. 2025, "Dynamic
    Negative Guidance of Diffusion Models", DNG).

    Why. Static removal eps_null + (s - 1)(eps_null - eps_k) samples the tilt p(x) p(k|x)^-(s-1): it piles mass
    where p(k|x) is smallest. The exact "anything but k" is p(x | not k) ∝ p(x) (1 - p(k|x)). Its noised marginal is
    p_t(x) (1 - p_t(k|x_t)), whose score in eps form (eps = -sqrt(1 - abar_t) grad log p_t) is, for negatives k_j,

        eps = eps_pos + sum_j w_j (eps_pos - eps(k_j)),   w_j = lambda p_j / (1 - P),   p_j = p_t(k_j | x_t),
                                                          P = sum_j p_j

    exact for pos = null and lambda = 1 (in score form the push lambda p/(1 - p) (grad log p_t - grad log p_t(x|k))
    is lambda grad log(1 - p_t(k|x_t)): each noise level is tilted by (1 - p_t(k|x_t))^lambda). With one negative it
    is static guidance with the scale s_t = 1 + lambda P / (1 - P): large only while the sample still looks like k.
    sum_j w_j is clipped to s - 1 (the Guided's scale s is the ceiling) and is 0 outside the guidance interval. For a
    positive class c the same push is a heuristic: away from k only while x_t looks like k rather than like c.

    How p_t(k | x_t) is carried. In the forward process c -> x_0 -> x_1 -> ... -> x_T is a Markov chain, so
    p(c | x_t, ..., x_T) = p(c | x_t), and Bayes' rule over one reverse step t -> t' gives

        p(c | x_t') ∝ p(c | x_t) N(x_t'; mu~_c, beta~ I),    mu~_c, beta~ = schedule.posterior(x0_hat_c, x_t, ...)

    the ancestral transition under class c (exact up to its Gaussian form; x0_hat_c clipped to [-1, 1] as the samplers
    clip theirs), starting from a uniform p(c) at x_T.
        tracker "two": from the branches guidance computes anyway. Removal (pos = null): over {k_1, ..., k_J,
                       rest}, where eps_rest = (eps_null - sum_j p_j eps(k_j)) / (1 - P) because the null prediction
                       is the posterior mean of the class predictions (DNG's two-branch ratio p N_k / N_null instead
                       takes the unconditional transition for the mixture; it leaks several % of k with DDIM).
                       A positive class c: the posterior within {c, k_1, ..., k_J}.
        tracker "all": every class 0..K-1 in the same batched forward (K + 1 branches), normalised over classes.
    DDIM with eta < 1 does not draw x_t' from that density; the tracker evaluates the same ancestral density at the
    state DDIM moved to (with eta = 1, DDIM's step is the ancestral one). Measured (tests/test_posterior.py, README):
    on an exact Gaussian mixture both trackers match p(x | not k) with DDPM and DDIM eta = 1, and "all" with
    deterministic DDIM too; on a learned model the tracked p runs low and a few % of k get through.

    After each call `trace` holds {"p": P, "scale": s_t}, both (B,), which the samplers yield with the step.
    """

    def __init__(self, guided: Guided, alpha_bar: torch.Tensor):
        g = self.g = guided
        K, B, J = g.model.cfg.num_classes, len(g.pos), len(g.ref)
        if g.ref_model is not None or bool((g.negative_classes() < 0).any()):
            raise UserError("posterior-aware guidance needs negative classes (removal or a class with negatives)")
        self.alpha_bar = alpha_bar.tolist()
        self.removal = g.pos == K                                               # (B,): pos = null
        if g.tracker == "all":                        # rows: classes 0..K-1
            log_p = torch.full((K, B), 1 / K, dtype=torch.float64)
        else:                                         # rows: "rest" (removal) or c, then k_1..k_J
            log_p = torch.where(self.removal, 1 / K, 1 / (1 + J)).double().expand(1 + J, B).clone()
            log_p[0] = torch.where(self.removal, 1 - J / K, log_p[0])
        self.log_p = log_p.clamp_min(1e-12).log().to(g.pos.device)
        self.prev = None                              # (x_t, abar_t, x0_hat per tracked row (M, B, ...))
        self.trace: dict | None = None

    def _observe(self, x: torch.Tensor, abar: float) -> None:
        """Bayes' rule for the step prev -> x: add log N(x; mu~_c, beta~ I) per tracked row, normalise."""
        x_prev, abar_prev, x0 = self.prev
        mean, var = posterior(x0, x_prev, abar_prev, abar)
        ll = -((x - mean) ** 2).flatten(2).sum(-1).double() / (2 * var)     # (M, B), up to a shared constant
        self.log_p = (self.log_p + ll).log_softmax(0)

    def _rows(self, eps_pos: torch.Tensor, eps_refs: Sequence[torch.Tensor], p: torch.Tensor, x: torch.Tensor,
              abar: float) -> torch.Tensor:
        """x0_hat of each tracked row (M, B, C, H, W) for the two-branch tracker. For removal row 0 is "rest": the
        null prediction is the posterior mean of the class predictions, eps_null = sum_c p_c eps_c, so the mean of
        the classes that are not negatives is (eps_null - sum_j p_j eps(k_j)) / (1 - P), no extra branch needed."""
        p = p.view(*p.shape, *[1] * (x.dim() - 1))                            # (J, B, 1, 1, 1)
        refs = torch.stack(list(eps_refs))
        rest = (eps_pos - (p * refs).sum(0)) / (1 - p.sum(0)).clamp_min(1e-6)
        first = torch.where(self.removal.view(-1, *[1] * (x.dim() - 1)), rest, eps_pos)
        return x0_from_eps(x, torch.cat([first[None], refs]), abar)

    def negatives(self) -> torch.Tensor:
        """(J, B) p_t(k_j | x_t)."""
        if self.g.tracker == "all":
            return self.log_p.gather(0, self.g.ref).exp()
        return self.log_p[1:].exp()

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        g, B = self.g, len(self.g.pos)
        abar = self.alpha_bar[int(t[0])]                                   # one t per chain step
        if self.prev is not None:
            self._observe(x, abar)
        p = self.negatives().to(x.dtype)                                       # (J, B) p_t(k_j | x_t)
        if g.tracker == "all":                        # pos and every class in one forward; eps(k_j) picked out
            K = g.model.cfg.num_classes
            classes = torch.arange(K, device=x.device)[:, None].expand(K, B)
            eps_pos, *eps_cls = batched_forward(g.model, x, t, [g.pos, *classes])
            tracked = torch.stack(eps_cls)                                     # (K, B, C, H, W)
            eps_refs = [tracked[k, torch.arange(B, device=x.device)] for k in g.ref]
            x0 = x0_from_eps(x, tracked, abar)
        else:
            eps_pos, *eps_refs = g.branches(x, t)
            x0 = self._rows(eps_pos, eps_refs, p, x, abar)
        self.prev = (x, abar, x0.clamp(-1, 1))          # as the samplers clip theirs: at t ~ T an unclipped x0_hat
                                                        # is noise / sqrt(abar_t) and would decide p at the first step
        P = p.sum(0)
        s = g.scales(t)
        if g.dynamic is None:                         # static guidance, tracked for the figures
            out, scale = g.static(eps_pos, eps_refs, s), s
        else:
            W = torch.minimum(g.dynamic * P / (1 - P).clamp_min(1e-6), (s - 1).clamp_min(0))     # sum_j w_j
            w = W * p / P.clamp_min(1e-30)                                                        # (J, B)
            view = (-1,) + (1,) * (x.dim() - 1)
            out = eps_pos + sum(w[j].view(view) * (eps_pos - e) for j, e in enumerate(eps_refs))
            out, scale = rescale_std(out, eps_pos, g.rescale), 1 + W
        self.trace = {"p": P.detach(), "scale": scale.detach()}
        return out


def guide(model: nn.Module, pos: torch.Tensor, *,
          scale: float,                                  # s; Ho & Salimans' w = s - 1
          negatives: Sequence[tuple[int | torch.Tensor, float]] = (),   # (k_j, a_j); k_j an int or (B,) labels
          ref_model: nn.Module | None = None,            # autoguidance: ref = same labels through this model
          interval: tuple[int, int] | None = None,
          rescale: float = 0.0,
          dynamic: float | None = None,                  # posterior-aware lambda (1 = exact removal); None = static
          tracker: str = "two",                          # "two" or "all" (see `PosteriorChain`)
          ) -> Guided:
    """Build the `Guided` denoiser for labels `pos` (B,), where `model.cfg.num_classes` is the null label.

    No negatives: ref = null (CFG), or ref = pos through `ref_model` (autoguidance).
    Negatives: ref = sum_j a_j eps(k_j) with the a_j normalised to 1.
    dynamic: posterior-aware guidance (`PosteriorChain`): the push away from each k_j is weighted per sample and
    step by lambda p_t(k_j | x_t) / (1 - P), its sum capped at s - 1; needs negatives, s >= 1 and equal a_j.
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
    check_dynamic(dynamic, tracker, scale, negatives)
    device = next(model.parameters()).device
    return Guided(model, pos.to(device), ref.to(device), ref_weights, scale, ref_model, interval, rescale,
                  None if dynamic is None else float(dynamic), tracker)


def check_dynamic(dynamic: float | None, tracker: str, scale: float,
                  negatives: Sequence[tuple[int | torch.Tensor, float]]) -> None:
    """The rules of posterior-aware guidance: lambda finite and > 0, negatives with equal weights (the posterior
    weighs them), s >= 1 (the ceiling of the scale), a known tracker."""
    if tracker not in TRACKERS:
        raise UserError(f"unknown posterior tracker {tracker!r}; choose one of {', '.join(TRACKERS)}")
    if dynamic is None:
        return
    if not (math.isfinite(float(dynamic)) and 0 < float(dynamic) <= MAX_SCALE):
        raise UserError(f"posterior-aware lambda must be a finite number in (0, {MAX_SCALE:g}], got {dynamic}")
    if not negatives:
        raise UserError("posterior-aware guidance pushes away from negative classes: give at least one negative")
    if len({float(w) for _, w in negatives}) > 1:
        raise UserError("posterior-aware guidance weighs each negative by its posterior p_t(k | x_t); "
                        "drop the :WEIGHT of the negatives")
    if scale < 1:
        raise UserError(f"with posterior-aware guidance s is the ceiling of the scale and must be >= 1, got {scale}")
