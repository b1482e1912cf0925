"""The geometry of guidance, computed (no plotting here: `viz.py` draws what these functions return).

Notation: x_i are the N training images (flattened to D = C*H*W), y_i their labels, I_c = {i : y_i = c}.

    class mean          mu_c = mean_{i in I_c} x_i                 global mean  mu = mean_i x_i
    guidance direction  d(x_t, t) = x0_hat(x_t, t, pos) - x0_hat(x_t, t, ref)

The guided x0-prediction is x0_ref + s * d (the formula is linear, guidance.py), so d is the step that guidance
scales. This module measures how d lines up with the mean-to-mean direction mu_pos - mu_ref at every noise level,
for the learned model and for the exact empirical-optimal denoiser of the training set:

    D*(x_t, t, c) = E[x_0 | x_t, c] = sum_{i in I_c} w_i x_i,
    w_i = softmax_i( -||x_t - sqrt(abar_t) x_i||^2 / (2 (1 - abar_t)) )            (null: i over every class)

i.e. the posterior mean when the data distribution is the training set itself (a mixture of Diracs) and
q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (DDPM eq. 4). As abar_t -> 0 the logits flatten and D* -> mu_c;
as abar_t -> 1 the softmax becomes an argmin and D* -> the nearest training point of class c.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .guidance import batched_forward
from .schedule import NoiseSchedule


def flat(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, D) float32 on the CPU."""
    return x.detach().reshape(len(x), -1).float().cpu()


def class_means(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes + 1, D): row c = mu_c, last row (the null label) = the global mean mu."""
    xf = flat(x)
    rows = [xf[y == c].mean(0) if (y == c).any() else torch.full(xf.shape[1:], float("nan"))
            for c in range(num_classes)]
    return torch.stack(rows + [xf.mean(0)])


@dataclass
class Plane:
    """A 2-D PCA plane of image space: project(x) = (flat(x) - mean) @ components.T  -> (N, 2)."""
    mean: np.ndarray           # (D,)
    components: np.ndarray     # (2, D) orthonormal rows PC1, PC2
    explained: np.ndarray      # (2,) explained variance ratio

    def project(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        return (flat(torch.as_tensor(x)).double().numpy() - self.mean) @ self.components.T


def fit_plane(x: torch.Tensor) -> Plane:
    """Fit sklearn's PCA (2 components) on images (N, C, H, W). The covariance solver is exact, like "full", and
    with N >> D far faster (MNIST's 60000 x 784: 1.5 s against 13 s; the same components, signs included)."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, svd_solver="covariance_eigh").fit(flat(x).numpy().astype(np.float64))
    return Plane(pca.mean_, pca.components_, pca.explained_variance_ratio_)


def default_pair(means2d: np.ndarray) -> tuple[int, int]:
    """The (pos, neg) pair that shows guidance best on the PCA plane, from the class means projected there
    ((K + 1, 2), last row the global mean mu): pos is the class whose mean lies farthest from mu (a long CFG arrow
    mu -> mu_pos), neg the class whose mean lies farthest from mu_pos (a long negative arrow mu_neg -> mu_pos)."""
    classes, mu = means2d[:-1], means2d[-1]
    far = np.nan_to_num(np.linalg.norm(classes - mu, axis=1), nan=-1.0)      # a class without images: NaN mean
    pos = int(far.argmax())
    neg = int(np.nan_to_num(np.linalg.norm(classes - classes[pos], axis=1), nan=-1.0).argmax())
    return pos, neg


def exact_x0(x_t: torch.Tensor, t: torch.Tensor | int, label: int, *,
             schedule: NoiseSchedule,
             data: torch.Tensor,        # (N, C, H, W) or (N, D) training images
             labels: torch.Tensor,      # (N,) their classes
             null: int,                 # the null label: D* over every class
             ) -> torch.Tensor:
    """The exact empirical-optimal denoiser D*(x_t, t, label) of the module docstring, shaped like x_t."""
    xd = flat(data).double()                                                  # (N, D)
    if label != null:
        xd = xd[labels.cpu() == label]
    t = torch.as_tensor(t).long().reshape(-1).expand(len(x_t))
    ab = schedule.alpha_bar[t][:, None]                                       # (B, 1) float64
    xt = flat(x_t).double()                                                   # (B, D)
    # ||x_t - sqrt(abar) x_i||^2 = ||x_t||^2 - 2 sqrt(abar) <x_t, x_i> + abar ||x_i||^2            (B, N)
    d2 = (xt ** 2).sum(1, keepdim=True) - 2 * ab.sqrt() * (xt @ xd.T) + ab * (xd ** 2).sum(1)[None]
    w = torch.softmax(-d2 / (2 * (1 - ab)), dim=1)                            # posterior over training points
    return (w @ xd).float().reshape(x_t.shape).to(x_t.device)


def subset(data: torch.Tensor, labels: torch.Tensor, max_points: int | None,
           seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random subset of at most `max_points` training points (all of them if None or enough)."""
    if max_points is None or len(data) <= max_points:
        return data, labels
    keep = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:max_points].sort().values
    return data[keep], labels[keep]


def cos_and_ratio(d: torch.Tensor, m: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per row b: cos(d_b, m) and ||d_b|| / ||m||.  d: (B, ...) flattened to (B, D); m: (D,).

    cos is NaN where ||d_b|| < 1e-3 ||m||: no push there, so no direction to measure."""
    d, m = flat(d).double(), m.double().reshape(-1)
    norm = d.norm(dim=1)
    cos = torch.where(norm > 1e-3 * m.norm(), d @ m / (norm.clamp_min(1e-30) * m.norm()), torch.nan)
    return cos.numpy(), (norm / m.norm()).numpy()


@dataclass
class Alignment:
    """Guidance direction d = x0_hat(pos) - x0_hat(ref) against mu_pos - mu_ref, per noise level.

    cos, ratio: (2, R, T', B) for source (model, exact) x reference x timestep x sample."""
    t: np.ndarray              # (T',) timesteps, increasing
    alpha_bar: np.ndarray      # (T',)
    pos: int                   # positive label
    refs: list[int]            # R reference labels (null = num_classes)
    mu_dist: np.ndarray        # (R,) ||mu_pos - mu_ref||
    cos: np.ndarray
    ratio: np.ndarray

    SOURCES = ("model", "exact")

    def noisiest(self, values: np.ndarray, fraction: float = 0.1) -> np.ndarray:
        """Mean over samples and over the noisiest `fraction` of the timesteps (t >= (1 - fraction) T):
        (2, R, T', B) -> (2, R)."""
        sel = self.t >= (1 - fraction) * (self.t.max() + 1)
        with warnings.catch_warnings():                 # no direction anywhere in a slice: NaN, said by the value
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(values[:, :, sel], axis=(2, 3))


@torch.no_grad()
def alignment(model: torch.nn.Module, schedule: NoiseSchedule, *,
              x0: torch.Tensor,              # (B, C, H, W) clean images the x_t are made from
              pos: int,                      # positive label
              refs: Sequence[int],           # reference labels: null (CFG) and/or negative classes
              ts: Sequence[int],             # timesteps to measure
              data: torch.Tensor,            # (N, C, H, W) training images: the means and D*
              labels: torch.Tensor,          # (N,)
              null: int,
              seed: int = 0,                 # noise for q_sample, shared by every t
              ) -> Alignment:
    """For each t: x_t = q_sample(x0, t, eps) (DDPM eq. 4, the same eps at every t), then
    d = x0_hat(x_t, pos) - x0_hat(x_t, ref) from the model (eps -> x0 via eq. 15; all branches in one
    forward) and from D*; both compared with mu_pos - mu_ref."""
    device = next(model.parameters()).device
    mu = class_means(data, labels, null)                                      # (K + 1, D); row null = mu
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    R, B = len(refs), len(x0)
    cos, ratio = np.zeros((2, R, len(ts), B)), np.zeros((2, R, len(ts), B))
    for j, t in enumerate(ts):
        tt = torch.full((B,), int(t), dtype=torch.long)
        x_t = schedule.q_sample(x0.cpu(), tt, noise)
        eps = batched_forward(model, x_t.to(device), tt.to(device),
                              [torch.full((B,), k, device=device) for k in (pos, *refs)])
        model_x0 = [schedule.eps_to_x0(x_t, tt, e.float().cpu()) for e in eps]          # (1 + R) x (B, C, H, W)
        exact = {k: exact_x0(x_t, tt, k, schedule=schedule, data=data, labels=labels, null=null)
                 for k in (pos, *refs)}
        for r, k in enumerate(refs):
            m = mu[pos] - mu[k]
            cos[0, r, j], ratio[0, r, j] = cos_and_ratio(model_x0[0] - model_x0[1 + r], m)
            cos[1, r, j], ratio[1, r, j] = cos_and_ratio(exact[pos] - exact[k], m)
    mu_dist = np.array([float((mu[pos] - mu[k]).norm()) for k in refs])
    return Alignment(np.asarray(ts), schedule.alpha_bar[list(ts)].numpy(), pos, list(refs), mu_dist, cos, ratio)


def pairwise_distances(x: torch.Tensor) -> np.ndarray:
    """All ||x_i - x_j|| for i < j: (M,) with M = n (n - 1) / 2."""
    xf = flat(x).double()
    d = torch.cdist(xf, xf)
    i, j = torch.triu_indices(len(xf), len(xf), offset=1)
    return d[i, j].numpy()


def mean_plane(means: torch.Tensor, pos: int, neg: int) -> Plane:
    """The plane through mu spanned by the two guidance directions at high noise, mu_pos - mu (CFG) and
    mu_pos - mu_neg (negative), made orthonormal (Gram-Schmidt). Unlike a global PCA plane, on which means can
    coincide, it shows mu, mu_pos and mu_neg exactly as far apart as they are in image space.
    means: (K + 1, D), last row mu (`class_means`). `explained` is NaN: the plane is not fitted to variance."""
    m = means.double()
    mu = m[-1]
    a, b = m[pos] - mu, m[pos] - m[neg]
    e1 = a / a.norm()
    r = b - (b @ e1) * e1                                   # the part of mu_pos - mu_neg off the CFG direction
    e2 = r / r.norm().clamp_min(1e-12)
    return Plane(mu.numpy(), torch.stack([e1, e2]).numpy(), np.full(2, np.nan))


@torch.no_grad()
def x0_hats(model: torch.nn.Module, schedule: NoiseSchedule, x_t: torch.Tensor, t: int,
            labels: Sequence[int | torch.Tensor]) -> list[torch.Tensor]:
    """The model's x0_hat(x_t, t, y) on the CPU for each y in `labels` (an int, e.g. the null label, or (B,)
    labels), all branches in one batched forward; eps -> x0 by DDPM eq. 15."""
    device = next(model.parameters()).device
    B = len(x_t)
    tt = torch.full((B,), int(t), dtype=torch.long)
    ys = [torch.as_tensor(y, dtype=torch.long).expand(B).to(device) for y in labels]
    eps = batched_forward(model, x_t.to(device), tt.to(device), ys)
    return [schedule.eps_to_x0(x_t, tt, e.float().cpu()) for e in eps]


def exact_x0_per_label(x_t: torch.Tensor, t: int, classes: torch.Tensor, **data) -> torch.Tensor:
    """`exact_x0` with a label per sample (B,): D*(x_t[b], t, classes[b]); `data`: exact_x0's keyword arguments."""
    out = torch.empty_like(x_t)
    for c in classes.unique().tolist():
        rows = classes == c
        out[rows] = exact_x0(x_t[rows], t, c, **data)
    return out


def relative_distance(pred: torch.Tensor, centre: torch.Tensor, x0: torch.Tensor) -> np.ndarray:
    """Per sample ||pred - centre|| / ||x0 - centre||: 0 where the prediction is the centre (a mean), 1 where it is
    as far from it as the clean image. pred, x0: (B, ...); centre: (D,) or (B, D)."""
    p, x = flat(pred).double(), flat(x0).double()
    c = centre.double().reshape(-1, p.shape[1])
    return ((p - c).norm(dim=1) / (x - c).norm(dim=1).clamp_min(1e-12)).numpy()


def in_plane_share(d: torch.Tensor, plane: Plane) -> np.ndarray:
    """Per row ||P d|| / ||d||, P the orthogonal projection onto `plane`'s directions: 1 = d lies in the plane.
    d: (B, ...) differences of images (the plane's origin cancels)."""
    v = flat(d).double().numpy()
    return np.linalg.norm(v @ plane.components.T, axis=1) / np.maximum(np.linalg.norm(v, axis=1), 1e-30)
