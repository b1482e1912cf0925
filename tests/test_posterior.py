"""Posterior-aware guidance on an exact Gaussian mixture: closed-form scores, so every gap is the method's.

Data: K = 3 isotropic Gaussians N(m_c, v I) in D = 4 dims (images of shape (1, 2, 2)), uniform prior, means on a
line at -a, 0, +a. Noised: x_t | c ~ N(sqrt(abar) m_c, (abar v + 1 - abar) I), so for each label
    eps(x_t, t, c)    = sqrt(1 - abar) (x_t - sqrt(abar) m_c) / (abar v + 1 - abar)
    eps(x_t, t, null) = sum_c p_t(c | x_t) eps(x_t, t, c)
and "anything but k" is exactly the mixture of the other two, half each.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from toydiff.errors import UserError
from toydiff.guidance import guide
from toydiff.pipeline import generate, trajectory
from toydiff.sampling import Sampler
from toydiff.schedule import NoiseSchedule

K, V, A = 3, 0.01, 0.6
MEANS = torch.tensor([-A, 0.0, A])[:, None] * torch.ones(4) / 2          # (K, D): |m_c - m_c'| = 0.6 per step


class Mixture(nn.Module):
    """eps(x_t, t, y) of the mixture above, y in 0..K-1 or K = null."""

    def __init__(self, schedule: NoiseSchedule):
        super().__init__()
        self.cfg = SimpleNamespace(num_classes=K, data_shape=(1, 2, 2))
        self.abar = schedule.alpha_bar.float()
        self.anchor = nn.Parameter(torch.zeros(()))                       # guide() reads the device from here

    def log_posterior(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, K) log p_t(c | x_t), exact."""
        ab = self.abar[t][:, None]
        d2 = ((x.flatten(1)[:, None] - ab.sqrt()[..., None] * MEANS) ** 2).sum(-1)     # (B, K)
        return (-d2 / (2 * (ab * V + 1 - ab))).log_softmax(1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ab = self.abar[t][:, None, None]
        xf = x.flatten(1)[:, None]                                                     # (B, 1, D)
        eps_c = (1 - ab).sqrt() * (xf - ab.sqrt() * MEANS) / (ab * V + 1 - ab)        # (B, K, D)
        weights = self.log_posterior(x, t).exp()
        eps_null = (weights[..., None] * eps_c).sum(1)
        eps = torch.where((y == K)[:, None], eps_null, eps_c[torch.arange(len(y)), y.clamp(max=K - 1)])
        return eps.view_as(x)


@pytest.fixture(scope="module")
def mixture():
    schedule = NoiseSchedule("cosine", 1000)
    return Mixture(schedule), schedule


def histogram(x: torch.Tensor) -> torch.Tensor:
    """Class frequencies of samples, each assigned to its nearest mean (the components barely overlap)."""
    nearest = torch.cdist(x.flatten(1), MEANS).argmin(1)
    return torch.bincount(nearest, minlength=K).double() / len(x)


def remove(mixture, k: int, sampler: Sampler, n: int = 2000, **kwargs) -> torch.Tensor:
    model, schedule = mixture
    return histogram(generate(guide(model, torch.full((n,), K), negatives=[(k, 1.0)], **kwargs), schedule, sampler,
                              seeds=range(n)))


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


TARGET = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)          # anything but 0: the other two, half each


DDPM, DDIM_ETA1, DDIM = Sampler("ddpm", 200, clip=False), Sampler("ddim", 100, eta=1.0, clip=False), \
    Sampler("ddim", 100, clip=False)
DPM = Sampler("dpm++2m", 20, clip=False)


@pytest.mark.parametrize("sampler, tracker, forbidden, tv_max", [
    (DDPM, "two", 0.01, 0.03), (DDPM, "all", 0.01, 0.03), (DDIM_ETA1, "two", 0.01, 0.03),
    (DDIM_ETA1, "all", 0.01, 0.03), (DDIM, "all", 0.01, 0.03),
    (DDIM, "two", 0.07, 0.07),      # deterministic DDIM: the lumped "rest" transition lets a few % of k through
    (DPM, "all", 0.01, 0.03), (DPM, "two", 0.07, 0.07),     # DPM-Solver++(2M), 20 calls: as deterministic DDIM
], ids=lambda v: v.label if isinstance(v, Sampler) else str(v))
def test_posterior_aware_removal_samples_the_mixture_without_k(mixture, sampler, tracker, forbidden, tv_max):
    """lambda = 1 removes class 0 and leaves the rest in proportion (2000 samples: the TV of a fair draw is ~0.01);
    static removal of the same class at s = 3 tilts the rest away from mu_0: class 2, the far one, takes it all."""
    dynamic = remove(mixture, 0, sampler, scale=100.0, dynamic=1.0, tracker=tracker)
    assert dynamic[0] <= forbidden and tv(dynamic, TARGET) <= tv_max, dynamic
    static = remove(mixture, 0, sampler, scale=3.0)
    assert static[0] <= 0.02 and static[2] > 0.9, static


def test_lambda_above_one_overshoots_towards_the_far_class(mixture):
    """The weight lambda p / (1 - p) is lambda grad log(1 - p_t(k | x_t)): at each noise level the tilt
    p_t(x) (1 - p_t(k | x_t))^lambda. With lambda = 2 the middle class, nearer to mu_0, loses mass to the far one;
    lambda = 1 is the exact point."""
    h = remove(mixture, 0, DDPM, scale=100.0, dynamic=2.0)
    assert h[2] - h[1] > 0.2, h


def test_unguided_unconditional_sampling_draws_the_prior(mixture):
    """The mixture denoiser itself is right: s = 1 on the null label draws each class a third of the time."""
    model, schedule = mixture
    x = generate(guide(model, torch.full((3000,), K), scale=1.0), schedule, Sampler("ddpm", 200, clip=False),
                 seeds=range(3000))
    assert tv(histogram(x), torch.full((K,), 1 / K, dtype=torch.float64)) <= 0.03


@pytest.mark.parametrize("tracker", ["two", "all"])
def test_tracked_posterior_follows_the_exact_one_along_the_chain(mixture, tracker):
    """Along unguided ancestral chains (static s = 1, tracked), the carried p_t(k | x_t) stays close to the
    closed-form posterior at the chain's own x_t, from the prior at x_T to 0 or 1 at x_0."""
    model, schedule = mixture
    n, k = 400, 1
    guided = guide(model, torch.full((n,), K), scale=1.0, negatives=[(k, 1.0)], tracker=tracker)
    errors, final, x_t = [], None, None
    for step in trajectory(guided, schedule, Sampler("ddpm", 200, clip=False), seeds=range(n), track=True):
        if x_t is not None:
            exact = model.log_posterior(x_t, torch.full((n,), step.t))[:, k].exp()
            errors.append((step.trace["p"].double() - exact.double()).abs().mean())
        x_t, final = step.x, step.trace["p"]
    assert float(torch.stack(errors).mean()) < 0.03
    is_k = torch.cdist(x_t.flatten(1), MEANS).argmin(1) == k
    assert float((final.double() - is_k.double()).abs().mean()) < 0.05            # committed at the end


def test_static_guidance_is_unchanged_by_tracking(mixture):
    """track=True only observes: the samples equal those of the untracked static sampler, bit for bit up to the
    batched forward."""
    model, schedule = mixture
    guided = guide(model, torch.full((64,), K), scale=3.0, negatives=[(0, 1.0)])
    sampler = Sampler("ddim", 20, clip=False)
    plain = list(trajectory(guided, schedule, sampler, seeds=range(64)))
    tracked = list(trajectory(guided, schedule, sampler, seeds=range(64), track=True))
    torch.testing.assert_close(plain[-1].x, tracked[-1].x)
    assert plain[-1].trace is None and tracked[-1].trace["scale"].eq(3.0).all()


def test_lambda_scales_the_push_and_the_ceiling_caps_it(mixture):
    """s_t = 1 + min(lambda P / (1 - P), s - 1): larger lambda, larger s_t; s = 1 is no guidance at all."""
    model, schedule = mixture
    labels = torch.full((200,), K)

    def mean_scales(**kw):
        steps = list(trajectory(guide(model, labels, negatives=[(0, 1.0)], **kw), schedule,
                                Sampler("ddim", 20, clip=False), seeds=range(200)))
        return torch.stack([s.trace["scale"] for s in steps])

    small, large = mean_scales(scale=50.0, dynamic=0.5), mean_scales(scale=50.0, dynamic=4.0)
    assert float(large.mean()) > float(small.mean()) and bool((large <= 50.0).all())
    assert bool((mean_scales(scale=2.0, dynamic=4.0) <= 2.0 + 1e-6).all())
    none = generate(guide(model, labels, scale=1.0, negatives=[(0, 1.0)], dynamic=1.0), schedule,
                    Sampler("ddim", 20, clip=False), seeds=range(200))
    plain = generate(guide(model, labels, scale=1.0), schedule, Sampler("ddim", 20, clip=False), seeds=range(200))
    torch.testing.assert_close(none, plain)


@pytest.mark.parametrize("kwargs, message", [
    (dict(dynamic=1.0), "give at least one negative"),
    (dict(dynamic=float("nan"), negatives=[(0, 1.0)]), "lambda must be a finite number"),
    (dict(dynamic=0.0, negatives=[(0, 1.0)]), "lambda must be a finite number"),
    (dict(dynamic=1.0, negatives=[(0, 0.7), (1, 0.3)]), "drop the :WEIGHT"),
    (dict(dynamic=1.0, negatives=[(0, 1.0)], scale=0.5), "ceiling of the scale and must be >= 1"),
    (dict(tracker="three", negatives=[(0, 1.0)]), "unknown posterior tracker"),
])
def test_bad_posterior_aware_settings_are_refused(mixture, kwargs, message):
    model, _ = mixture
    kwargs = {"scale": 3.0, **kwargs}
    with pytest.raises(UserError, match=message):
        guide(model, torch.full((4,), K), **kwargs)


def test_quota_labels_follow_the_prior_without_the_removed_classes():
    """The exact baseline's labels: counts are the renormalised prior times n, rounded by largest remainder."""
    from toydiff.pipeline import quota_labels

    labels = quota_labels([0.5, 0.3, 0.2], 7, removed=[1])
    assert labels.tolist() == [0] * 5 + [2] * 2
    counts = torch.bincount(quota_labels([0.1] * 10, 2000, removed=[3]), minlength=10)
    assert counts[3] == 0 and counts.sum() == 2000 and int(counts.max() - counts[counts > 0].min()) <= 1
    with pytest.raises(UserError, match="no class to sample"):
        quota_labels([0.5, 0.5], 4, removed=[0, 1])


def test_several_negatives_are_removed_together(mixture):
    """Removing {0, 1} leaves the last component alone: the weights w_j = p_j / (1 - P) share one budget."""
    model, schedule = mixture
    n = 1000
    for tracker in ("two", "all"):
        g = guide(model, torch.full((n,), K), negatives=[(0, 1.0), (1, 1.0)], scale=100.0, dynamic=1.0,
                  tracker=tracker)
        h = histogram(generate(g, schedule, DDPM, seeds=range(n)))
        assert h[2] >= 0.97, (tracker, h)


def test_a_positive_class_keeps_its_shape_under_posterior_aware_negatives(mixture):
    """Class 1 away from 0: the push acts only where x_t looks like 0 rather than 1, so the class-1 cloud keeps
    its spread (static s = 3 pushes every sample and shifts the whole cloud away from m_0)."""
    model, schedule = mixture
    n, labels = 500, torch.full((500,), 1)

    def cloud(**kw):
        return generate(guide(model, labels, negatives=[(0, 1.0)], **kw), schedule, DDPM, seeds=range(n)).flatten(1)

    plain = generate(guide(model, labels, scale=1.0), schedule, DDPM, seeds=range(n)).flatten(1)
    dynamic, static = cloud(scale=3.0, dynamic=1.0), cloud(scale=3.0)
    shift = lambda x: float((x.mean(0) - MEANS[1]).norm())                                   # noqa: E731
    assert histogram(dynamic)[1] == 1.0
    assert shift(dynamic) < 2 * shift(plain) + 0.02 < shift(static)
