"""The exact 2D playground: a class-conditional Gaussian mixture in R^2 whose denoiser has a closed form.

Notation (shapes in comments: N points, M components, K classes):
    component m:   weight pi_m (sum 1), mean mu_m (2,), covariance Sigma_m (2, 2), class c(m)
    class prior    pi_c = sum_{m in c} pi_m;   p(x | c) = sum_{m in c} (pi_m / pi_c) N(x; mu_m, Sigma_m)
    null label     p(x) = sum_m pi_m N(x; mu_m, Sigma_m)   (the mixture of all classes; what label dropout learns)
    VP noising     x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps, so per component (Ho et al. 2020, eq. 4)
                   x_t | m ~ N(sqrt(abar) mu_m, S_m),   S_m = abar Sigma_m + (1 - abar) I
    posterior mean E[x_0 | x_t, m] = mu_m + sqrt(abar) Sigma_m S_m^-1 (x_t - sqrt(abar) mu_m)     (Gaussian
                   conditioning), and with responsibilities r_m(x_t) ∝ pi_m N(x_t; sqrt(abar) mu_m, S_m) taken over
                   the components of c (or all of them for null):  E[x_0 | x_t, c] = sum_m r_m E[x_0 | x_t, m].
    eps            eps(x_t, t, y) = (x_t - sqrt(abar) E[x_0 | x_t, y]) / sqrt(1 - abar)    (schedule.eps_from_x0)

`ExactDenoiser` is that formula as a model with the UNet's `forward(x_t, t, y) -> eps`, so `guidance.guide`, the
samplers, `pipeline.trajectory` and `PosteriorChain` run on it unchanged. Guidance convention everywhere:
eps = eps_ref + s (eps_pos - eps_ref); s = 1 is no guidance; Ho & Salimans' w = s - 1.

Exact references on a grid (`Grid`): the density the guidance formula is often said to sample,
    p_s(x) ∝ p(x | pos)^s p(x | ref)^(1 - s)        (CFG: ref = null, = p(x|c) p(c|x)^(s-1) up to a constant;
                                                      negative: ref = k; removal: pos = null, ref = k)
which is NOT what the sampler produces (Chidambaram et al. 2024, "What does guidance do?"; Bradley & Nakkiran 2024,
"Classifier-free guidance is a predictor-corrector"): the tilt of the noised densities is not the noised tilt.
"Anything but k" exactly: p(x | not k) = sum_{c != k} pi_c p(x | c) / (1 - pi_k). The Bayes classifier p(c | x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .schedule import NoiseSchedule

LOG_2PI = math.log(2 * math.pi)


def _solve2(S: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """S^-1 d and log det S for 2x2 covariances S (..., 2, 2) and vectors d (..., 2), in closed form:
    S^-1 = [[s11, -s01], [-s10, s00]] / det S (much faster than a batched linalg.solve on tiny matrices)."""
    a, b, c, e = S[..., 0, 0], S[..., 0, 1], S[..., 1, 0], S[..., 1, 1]
    det = a * e - b * c
    sol = torch.stack([e * d[..., 0] - b * d[..., 1], a * d[..., 1] - c * d[..., 0]], -1) / det[..., None]
    return sol, det.log()


def _cov(sx: float, sy: float, degrees: float = 0.0) -> list[list[float]]:
    """R diag(sx^2, sy^2) R^T: a 2x2 covariance with standard deviations sx, sy along axes turned by `degrees`."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    r = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return (r @ torch.diag(torch.tensor([sx * sx, sy * sy], dtype=torch.float64)) @ r.T).tolist()


@dataclass(frozen=True)
class Mixture:
    """A class-conditional Gaussian mixture in R^2 (float64 tensors). See the module docstring for the notation."""
    weights: torch.Tensor            # (M,) pi_m, sum 1
    means: torch.Tensor              # (M, 2) mu_m
    covs: torch.Tensor               # (M, 2, 2) Sigma_m
    classes: torch.Tensor            # (M,) int64 c(m)
    class_names: tuple[str, ...]
    component_names: tuple[str, ...] = field(default=())

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def prior(self) -> torch.Tensor:
        """(K,) pi_c = sum_{m in c} pi_m."""
        return torch.zeros(self.num_classes, dtype=torch.float64).index_add_(0, self.classes, self.weights)

    def class_means(self) -> torch.Tensor:
        """(K, 2) mu_c = E[x_0 | c]."""
        w = self.weights[:, None] * self.means                                      # (M, 2)
        return torch.zeros(self.num_classes, 2, dtype=torch.float64).index_add_(0, self.classes, w) / self.prior[:, None]

    def mean(self) -> torch.Tensor:
        """(2,) mu = E[x_0], the mean of the null label's mixture."""
        return self.weights @ self.means

    def noised(self, abar: float) -> Mixture:
        """The law of x_t: each component N(sqrt(abar) mu_m, abar Sigma_m + (1 - abar) I)."""
        eye = torch.eye(2, dtype=torch.float64)
        return Mixture(self.weights, abar ** 0.5 * self.means, abar * self.covs + (1 - abar) * eye, self.classes,
                       self.class_names, self.component_names)

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """(N, M) log pi_m + log N(x; mu_m, Sigma_m) for points x (N, 2)."""
        d = x.double()[:, None, :] - self.means                                     # (N, M, 2)
        sol, logdet = _solve2(self.covs, d)                                        # Sigma_m^-1 d
        maha = (d * sol).sum(-1)                                                    # (N, M)
        return self.weights.log() - 0.5 * (maha + logdet + 2 * LOG_2PI)

    def log_density(self, x: torch.Tensor, c: int | None = None) -> torch.Tensor:
        """(N,) log p(x | c), or log p(x) for c = None (the null label)."""
        lj = self.log_joint(x)
        if c is None:
            return lj.logsumexp(1)
        return lj[:, self.classes == c].logsumexp(1) - self.prior[c].log()

    def log_not(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """(N,) log p(x | not k) = log sum_{m not in k} pi_m N(x; mu_m, Sigma_m) - log(1 - pi_k)."""
        return self.log_joint(x)[:, self.classes != k].logsumexp(1) - (1 - self.prior[k]).log()

    def component_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """(N, M) p(m | x), the exact responsibilities."""
        return self.log_joint(x).softmax(1)

    def class_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) p(c | x): the exact Bayes classifier, the 2D playground's judge."""
        r = self.component_posterior(x)
        return torch.zeros(len(x), self.num_classes, dtype=torch.float64).index_add_(1, self.classes, r)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n draws (x (n, 2) float64, component m (n,)): m ~ pi, x = mu_m + L_m z with L_m L_m^T = Sigma_m."""
        m = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        chol = torch.linalg.cholesky(self.covs)                                     # (M, 2, 2)
        return self.means[m] + (chol[m] @ z[:, :, None]).squeeze(-1), m


def toy2d() -> Mixture:
    """The playground's mixture, designed to teach (all of it inside [-1, 1]^2, the range the samplers clip to):
        A, B  a confusable pair that overlaps: a negative k = B has something to remove from A that CFG does not
        far   a small class far from the others
        arc   one class made of three Gaussians along an arc (its shape is not one Gaussian)
        unequal priors pi = (0.30, 0.15, 0.15, 0.40).
    B is wider than every other component in every direction, so the tilts of `guided_log_density` with ref = B
    are normalisable for any s >= 1: p(x | c)^s p(x | k)^(1 - s) has a finite integral only where
    s Sigma_c^-1 - (s - 1) Sigma_k^-1 is positive definite (the Gaussian tails), i.e. when k is the wider one."""
    comps = [  # (class, name, weight, mean, covariance)
        (0, "A", 0.30, (-0.45, 0.05), _cov(0.12, 0.12)),
        (1, "B", 0.15, (-0.22, -0.25), _cov(0.20, 0.13, 35)),     # the widest in every direction: see below
        (2, "far", 0.15, (0.55, 0.55), _cov(0.08, 0.08)),
        (3, "arc-1", 0.15, (0.15, -0.60), _cov(0.09, 0.05, 15)),
        (3, "arc-2", 0.15, (0.50, -0.40), _cov(0.09, 0.05, 55)),
        (3, "arc-3", 0.10, (0.65, -0.05), _cov(0.09, 0.05, 90)),
    ]
    return Mixture(weights=torch.tensor([w for _, _, w, _, _ in comps], dtype=torch.float64),
                   means=torch.tensor([mu for *_, mu, _ in comps], dtype=torch.float64),
                   covs=torch.tensor([s for *_, s in comps], dtype=torch.float64),
                   classes=torch.tensor([c for c, *_ in comps]),
                   class_names=("A", "B", "far", "arc"),
                   component_names=tuple(n for _, n, *_ in comps))


@dataclass(frozen=True)
class ExactConfig:
    """What the library reads of a model's config: the null label index and the shape of one sample."""
    num_classes: int
    data_shape: tuple[int, ...] = (2,)


class ExactDenoiser(nn.Module):
    """The exact eps(x_t, t, y) of a `Mixture` under `schedule`: (B, 2), (B,) int64, (B,) int64 -> (B, 2).

    y = num_classes is the null label (the whole mixture). Computed in float64, returned in x's dtype.
    """

    def __init__(self, mixture: Mixture, schedule: NoiseSchedule):
        super().__init__()
        self.mixture, self.cfg = mixture, ExactConfig(mixture.num_classes)
        # parameters, not plain tensors, so `guide` reads the device from the model and .to() moves them
        self.means = nn.Parameter(mixture.means.clone(), requires_grad=False)          # (M, 2)
        self.covs = nn.Parameter(mixture.covs.clone(), requires_grad=False)            # (M, 2, 2)
        self.log_w = nn.Parameter(mixture.weights.log(), requires_grad=False)          # (M,)
        self.register_buffer("classes", mixture.classes.clone())
        self.register_buffer("alpha_bar", schedule.alpha_bar.clone())                 # (T,) float64

    def _terms(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """abar (B, 1), log pi_m N(x_t; sqrt(abar) mu_m, S_m) (B, M) and E[x_0 | x_t, m] (B, M, 2)."""
        ab = self.alpha_bar[t.long()][:, None]                                          # (B, 1)
        eye = torch.eye(2, dtype=torch.float64, device=x.device)
        S = ab[..., None, None] * self.covs + (1 - ab)[..., None, None] * eye          # (B, M, 2, 2) S_m
        d = x.double()[:, None, :] - ab[..., None].sqrt() * self.means                 # (B, M, 2)
        sol, logdet = _solve2(S, d)                                                    # S_m^-1 d
        log_n = self.log_w - 0.5 * ((d * sol).sum(-1) + logdet + 2 * LOG_2PI)
        x0_m = self.means + ab[..., None].sqrt() * (self.covs @ sol.unsqueeze(-1)).squeeze(-1)
        return ab, log_n, x0_m

    def x0(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """E[x_0 | x_t, y] (B, 2) float64: responsibilities over the components of class y (all for null)."""
        _, log_n, x0_m = self._terms(x, t)
        own = (self.classes[None, :] == y[:, None]) | (y[:, None] == self.cfg.num_classes)   # (B, M)
        r = log_n.masked_fill(~own, -math.inf).softmax(1)
        return (r[..., None] * x0_m).sum(1)

    def class_posterior(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, K) p_t(c | x_t), exact."""
        _, log_n, _ = self._terms(x, t)
        r = log_n.softmax(1)
        return torch.zeros(len(x), self.cfg.num_classes, dtype=r.dtype, device=x.device).index_add_(1, self.classes, r)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ab = self.alpha_bar[t.long()][:, None]
        eps = (x.double() - ab.sqrt() * self.x0(x, t, y)) / (1 - ab).sqrt()            # schedule.eps_from_x0
        return eps.to(x.dtype)


# ---------------------------------------------------------------- exact references on a grid

@dataclass(frozen=True)
class Grid:
    """A square grid of cell centres over [-r, r]^2: `points` (n^2, 2) row-major (y outer, x inner)."""
    radius: float = 1.5
    n: int = 301

    @property
    def axis(self) -> torch.Tensor:
        return torch.linspace(-self.radius, self.radius, self.n, dtype=torch.float64)

    @property
    def cell(self) -> float:
        return 2 * self.radius / (self.n - 1)

    @property
    def points(self) -> torch.Tensor:
        yy, xx = torch.meshgrid(self.axis, self.axis, indexing="ij")
        return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)

    def normalise(self, log_density: torch.Tensor) -> torch.Tensor:
        """(n^2,) probability of each cell for an unnormalised log density at `points`."""
        return (log_density - log_density.max()).exp() / (log_density - log_density.max()).exp().sum()

    def sample(self, prob: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """n exact draws (n, 2) from a cell distribution: a cell ~ prob, then uniform within the cell."""
        idx = torch.multinomial(prob, n, replacement=True, generator=generator)
        jitter = (torch.rand(n, 2, generator=generator, dtype=torch.float64) - 0.5) * self.cell
        return self.points[idx] + jitter


def guided_log_density(mix: Mixture, x: torch.Tensor, *, pos: int | None, ref: int | None,
                       scale: float) -> torch.Tensor:
    """log p(x | pos)^s p(x | ref)^(1 - s), unnormalised (None = the null label, p(x)).

    CFG (ref = None): = log p(x | c) + (s - 1) log p(c | x) + const, the tilted density "CFG samples" at t = 0.
    Negative (ref = k): p(x | c) (p(c | x) / p(k | x))^(s - 1). Removal (pos = None, ref = k): p(x) p(k | x)^-(s-1).
    Guidance scale s; Ho & Salimans' w = s - 1."""
    return scale * mix.log_density(x, pos) + (1 - scale) * mix.log_density(x, ref)


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| between samples x (N, d), y (N', d) (Szekely & Rizzo
    2013), as the V-statistic (all pairs, >= 0). Zero iff the laws agree; at finite N two exact samples of one law
    give a positive floor of order 1/N: compare against `energy_distance(exact, exact')` at the same N."""
    x, y = x.double(), y.double()
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())

