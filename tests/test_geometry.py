"""geometry.py on tiny synthetic data with known answers: the exact denoiser's limits and its Bayes identity,
PCA of separated blobs, the cosine / norm ratio, and the alignment of a model that IS the exact denoiser."""

import numpy as np
import pytest
import torch
from torch import nn

from toydiff import geometry
from toydiff.schedule import NoiseSchedule

NULL = 2


def two_classes(n=12, d=16, seed=0):
    """n points per class in d dims, class 0 around -0.5, class 1 around +0.5 (images (2n, 1, 4, 4))."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2 * n, d, generator=g) - 0.5
    y = torch.arange(2).repeat_interleave(n)
    x = x + torch.where(y[:, None] == 0, -0.5, 0.5)
    return x.reshape(2 * n, 1, 4, 4), y


def test_class_means_rows_and_global_mean():
    x, y = two_classes()
    mu = geometry.class_means(x, y, NULL)
    assert mu.shape == (3, 16)
    torch.testing.assert_close(mu[1], x[y == 1].reshape(-1, 16).mean(0))
    torch.testing.assert_close(mu[NULL], x.reshape(-1, 16).mean(0))


def test_exact_denoiser_at_full_noise_is_the_class_mean():
    x, y = two_classes()
    sch = NoiseSchedule("cosine", 1000)
    x_t = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(1))        # abar ~ 2e-9: pure noise
    mu = geometry.class_means(x, y, NULL)
    for c in (0, 1, NULL):
        d = geometry.exact_x0(x_t, sch.T - 1, c, schedule=sch, data=x, labels=y, null=NULL)
        assert d.shape == x_t.shape
        torch.testing.assert_close(d.reshape(5, -1), mu[c].expand(5, -1), atol=1e-3, rtol=0)   # means ~1 apart


def test_exact_denoiser_at_no_noise_is_the_nearest_training_point():
    x, y = two_classes()
    sch = NoiseSchedule("cosine", 1000)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    x_t = sch.q_sample(x, torch.zeros(len(x), dtype=torch.long), noise)              # x_i + ~0.006 noise
    own = geometry.exact_x0(x_t, 0, NULL, schedule=sch, data=x, labels=y, null=NULL)
    torch.testing.assert_close(own, x, atol=1e-4, rtol=0)                           # each x_t -> its own x_i
    # restricted to the other class: the nearest point of that class
    for c in (0, 1):
        d = geometry.exact_x0(x_t, 0, c, schedule=sch, data=x, labels=y, null=NULL).reshape(len(x), -1)
        members = x[y == c].reshape(-1, 16)
        nearest = members[torch.cdist(x_t.reshape(len(x), -1), members).argmin(1)]
        torch.testing.assert_close(d, nearest, atol=1e-4, rtol=0)


def test_exact_null_denoiser_is_the_posterior_mixture_of_the_class_denoisers():
    """D*(x_t, null) = sum_c p(c | x_t) D*(x_t, c), p(c | x_t) proportional to sum_{i in c} N(x_t; sqrt(abar) x_i, ...)."""
    x, y = two_classes(n=7)
    y[:3] = 1                                                                       # unequal class sizes
    sch = NoiseSchedule("linear", 100)
    t = 60
    x_t = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    ab = float(sch.alpha_bar[t])
    logit = -torch.cdist(x_t.reshape(4, -1).double(), ab ** 0.5 * x.reshape(len(x), -1).double()) ** 2 / (2 * (1 - ab))
    log_pc = torch.stack([torch.logsumexp(logit[:, y == c], 1) for c in (0, 1)], 1)
    p = torch.softmax(log_pc, 1).float()                                            # (4, 2)
    parts = torch.stack([geometry.exact_x0(x_t, t, c, schedule=sch, data=x, labels=y, null=NULL) for c in (0, 1)])
    mix = (p.T[:, :, None, None, None] * parts).sum(0)
    torch.testing.assert_close(geometry.exact_x0(x_t, t, NULL, schedule=sch, data=x, labels=y, null=NULL), mix,
                               atol=1e-5, rtol=1e-5)


def test_pca_puts_two_separated_blobs_apart_on_pc1():
    g = torch.Generator().manual_seed(0)
    n, d = 50, 10
    centre = torch.zeros(d)
    centre[3] = 4.0
    x = torch.cat([torch.randn(n, d, generator=g) * 0.3 + centre, torch.randn(n, d, generator=g) * 0.3 - centre])
    y = torch.arange(2).repeat_interleave(n)
    plane = geometry.fit_plane(x.reshape(2 * n, 1, 1, d))
    means = plane.project(geometry.class_means(x, y, 2))                            # (3, 2)
    assert abs(means[0, 0] - means[1, 0]) > 7.0                                     # ~ 8 apart along PC1
    assert abs(means[0, 1] - means[1, 1]) < 0.5
    assert plane.explained[0] > 0.8
    assert abs(means[2]).max() < 1e-6                                               # the global mean is the origin


def test_cos_and_ratio_on_constructed_directions():
    m = torch.tensor([3.0, 4.0, 0.0])                                               # ||m|| = 5
    d = torch.stack([2 * m, -m, torch.tensor([4.0, -3.0, 0.0]), torch.zeros(3), torch.tensor([3.0, 4.0, 5.0])])
    cos, ratio = geometry.cos_and_ratio(d, m)
    np.testing.assert_allclose(cos[[0, 1, 2, 4]], [1.0, -1.0, 0.0, 1 / 2 ** 0.5], atol=1e-12)
    assert np.isnan(cos[3])                                                         # no push: no direction
    np.testing.assert_allclose(ratio, [2.0, 1.0, 1.0, 0.0, 2 ** 0.5], atol=1e-12)


class ExactModel(nn.Module):
    """A 'network' whose eps is exactly the one implied by D*: eps = (x_t - sqrt(abar) D*(x_t, y)) / sqrt(1 - abar)."""

    def __init__(self, sch, x, y):
        super().__init__()
        self.sch, self.x, self.y = sch, x, y
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x_t, t, labels):
        x0 = torch.empty_like(x_t)
        for c in labels.unique().tolist():
            sel = labels == c
            x0[sel] = geometry.exact_x0(x_t[sel], t[sel], c, schedule=self.sch, data=self.x, labels=self.y,
                                        null=NULL)
        return self.sch.x0_to_eps(x_t, t, x0)


def test_alignment_of_a_model_that_is_the_exact_denoiser():
    x, y = two_classes()
    sch = NoiseSchedule("linear", 100)
    ts = [0, 20, 50, 80, 99]
    al = geometry.alignment(ExactModel(sch, x, y), sch, x0=x[y == 0][:6], pos=0, refs=[NULL, 1], ts=ts, data=x,
                            labels=y, null=NULL)
    assert al.cos.shape == al.ratio.shape == (2, 2, len(ts), 6)
    both = np.isfinite(al.cos[0]) & np.isfinite(al.cos[1])
    assert both[:, -1].all()
    np.testing.assert_allclose(al.cos[0][both], al.cos[1][both], atol=1e-3)        # model curve = exact curve
    np.testing.assert_allclose(al.ratio[0], al.ratio[1], atol=1e-3)
    assert (al.cos[1, :, -1] > 0.99).all() and np.allclose(al.ratio[1, :, -1], 1, atol=0.02)   # noisiest t: d = mu_pos - mu_ref
    mu = geometry.class_means(x, y, NULL)
    np.testing.assert_allclose(al.mu_dist, [(mu[0] - mu[NULL]).norm(), (mu[0] - mu[1]).norm()], rtol=1e-6)
    assert al.noisiest(al.cos, fraction=0.05).shape == (2, 2)


def test_pairwise_distances_and_subset():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    np.testing.assert_allclose(np.sort(geometry.pairwise_distances(x)), [1.0, 18 ** 0.5, 5.0])
    data, labels = torch.arange(100.0)[:, None], torch.arange(100) % 3
    a, la = geometry.subset(data, labels, 10, seed=1)
    b, _ = geometry.subset(data, labels, 10, seed=1)
    assert len(a) == 10 and torch.equal(a, b) and torch.equal(la, labels[a[:, 0].long()])
    assert geometry.subset(data, labels, None)[0] is data


def test_the_default_pair_takes_the_mean_farthest_from_mu_then_the_one_farthest_from_it():
    means2d = np.array([[1.0, 0.0], [0.0, 5.0], [-3.0, 0.0], [0.5, 0.5], [0.0, 0.0]])     # 4 classes, then mu
    assert geometry.default_pair(means2d) == (1, 2)
    means2d[1] = np.nan                                                                  # a class without images
    assert geometry.default_pair(means2d) == (2, 0)
