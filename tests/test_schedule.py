"""Closed forms of the forward process, checked as identities."""

import pytest
import torch

from toydiff.errors import UserError
from toydiff.schedule import NoiseSchedule


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
def test_posterior_is_consistent_with_the_marginals(kind):
    """q(x_{t-1}|x_t, x0) composed with q(x_t|x0) must give q(x_{t-1}|x0) = N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}):
    mean  c0 + ct sqrt(abar_t) = sqrt(abar_{t-1});  variance  ct^2 (1 - abar_t) + beta~_t = 1 - abar_{t-1}."""
    s = NoiseSchedule(kind, 1000)
    ab, ab_prev = s.alpha_bar, s.alpha_bar_prev
    torch.testing.assert_close(s.posterior_coef_x0 + s.posterior_coef_xt * ab.sqrt(), ab_prev.sqrt())
    torch.testing.assert_close(s.posterior_coef_xt ** 2 * (1 - ab) + s.posterior_var, 1 - ab_prev)


def test_posterior_gathers_per_sample():
    s = NoiseSchedule("cosine", 100)
    x0, xt = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    mean, var = s.posterior(x0, xt, torch.tensor([5, 50]))
    assert mean.shape == (2, 1, 2, 2) and var.shape == (2, 1, 1, 1)
    assert mean[0, 0, 0, 0].item() == pytest.approx(s.posterior_coef_x0[5].item(), rel=1e-5)


def test_bad_schedule_is_a_user_error():
    with pytest.raises(UserError):
        NoiseSchedule("quadratic", 10)
    with pytest.raises(UserError):
        NoiseSchedule("cosine", 0)
