"""Closed forms of the forward process, checked as identities."""

import pytest
import torch

from toydiff.errors import UserError
from toydiff.schedule import NoiseSchedule, posterior


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_alpha_bar_decreases_from_one_towards_zero(kind):
    s = NoiseSchedule(kind, 1000)
    ab = s.alpha_bar
    assert (ab[1:] < ab[:-1]).all()
    assert 0.99 < ab[0] < 1 and ab[-1] < 1e-3 and (ab > 0).all()
    assert (s.betas > 0).all() and (s.betas < 1).all()


def test_linear_schedule_has_ho_et_al_endpoints():
    s = NoiseSchedule("linear", 1000)
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_q_sample_at_t0_is_close_to_x0_and_at_T_is_noise(kind):
    s = NoiseSchedule(kind, 1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(256, 1, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    near = s.q_sample(x0, torch.zeros(256, dtype=torch.long), noise)
    assert (near - x0).abs().max() < 0.05
    far = s.q_sample(x0, torch.full((256,), 999), noise)
    assert (far - noise).abs().max() < 0.05


def test_eps_and_x0_conversions_are_inverse():
    s = NoiseSchedule("cosine", 1000)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(8, 1, 8, 8, generator=g), torch.randn(8, 1, 8, 8, generator=g)
    t = torch.tensor([0, 1, 10, 100, 400, 700, 900, 990])
    xt = s.q_sample(x0, t, eps)
    torch.testing.assert_close(s.eps_to_x0(xt, t, eps), x0, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(s.x0_to_eps(xt, t, x0), eps, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
@pytest.mark.parametrize("stride", [1, 7])
def test_posterior_is_consistent_with_the_marginals(kind, stride):
    """q(x_t' | x_t, x0) composed with q(x_t | x0) must give q(x_t' | x0) = N(sqrt(abar_t') x0, 1 - abar_t'):
    with mean c0 x0 + ct x_t, c0 + ct sqrt(abar_t) = sqrt(abar_t') and ct^2 (1 - abar_t) + beta~ = 1 - abar_t'.
    stride 1 is the paper's t' = t - 1; stride 7 a respaced chain (the samplers' case)."""
    ab = NoiseSchedule(kind, 1000).alpha_bar
    ab_t, ab_prev = ab[stride::stride], ab[:-stride:stride]
    ones = torch.ones_like(ab_t)
    c0, var = posterior(ones, 0 * ones, ab_t, ab_prev)          # x0 = 1, x_t = 0: the mean is c0
    ct, _ = posterior(0 * ones, ones, ab_t, ab_prev)            # x0 = 0, x_t = 1: the mean is ct
    torch.testing.assert_close(c0 + ct * ab_t.sqrt(), ab_prev.sqrt())
    torch.testing.assert_close(ct ** 2 * (1 - ab_t) + var, 1 - ab_prev)


def test_posterior_to_x0_at_the_last_step_is_x0_itself():
    """abar_prev = 1 (the last step, to x_0): the mean is x0 and the variance 0."""
    x0, xt = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    mean, var = posterior(x0, xt, 0.9, 1.0)
    torch.testing.assert_close(mean, x0)
    assert var == 0


def test_bad_schedule_is_a_user_error():
    with pytest.raises(UserError):
        NoiseSchedule("quadratic", 10)
    with pytest.raises(UserError):
        NoiseSchedule("cosine", 0)
