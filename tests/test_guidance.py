"""The one formula eps = eps_ref + s (eps_pos - eps_ref) and its reductions."""

import dataclasses

import pytest
import torch

from toydiff.errors import UserError
from toydiff.guidance import Guided, batched_forward, combine, guide
from toydiff.schedule import NoiseSchedule

NULL = 10


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 8, 8, generator=g)
    t = torch.tensor([0, 10, 30, 50, 70, 99])
    pos = torch.tensor([0, 1, 2, 3, 4, 5])
    return x, t, pos


def eps(model, x, t, label):
    """One branch alone, as a textbook would compute it."""
    return model(x, t, torch.as_tensor(label).expand(len(x)))


def test_s_equal_one_is_the_positive_prediction(tiny_model, batch):
    x, t, pos = batch
    out = guide(tiny_model, pos, scale=1.0, negatives=[(7, 1.0)])(x, t)
    torch.testing.assert_close(out, eps(tiny_model, x, t, pos))


def test_s_equal_zero_is_the_reference(tiny_model, batch):
    x, t, pos = batch
    out = guide(tiny_model, pos, scale=0.0, negatives=[(7, 1.0)])(x, t)
    torch.testing.assert_close(out, eps(tiny_model, x, t, 7), atol=1e-5, rtol=1e-4)


def test_null_reference_is_textbook_cfg(tiny_model, batch):
    x, t, pos = batch
    s = 3.0
    e_c, e_u = eps(tiny_model, x, t, pos), eps(tiny_model, x, t, NULL)
    w = s - 1                                                     # Ho & Salimans eq. (6): (1 + w) e_c - w e_u
    torch.testing.assert_close(guide(tiny_model, pos, scale=s)(x, t), (1 + w) * e_c - w * e_u,
                               atol=1e-5, rtol=1e-4)


def test_negative_equal_to_null_reduces_to_cfg(tiny_model, batch):
    x, t, pos = batch
    cfg = guide(tiny_model, pos, scale=2.5)
    neg = guide(tiny_model, pos, scale=2.5, negatives=[(3, 1.0)])
    as_null = dataclasses.replace(neg, ref=torch.full_like(neg.ref, NULL))
    torch.testing.assert_close(as_null(x, t), cfg(x, t))


def test_negative_class_replaces_the_uncond(tiny_model, batch):
    x, t, pos = batch
    e_c, e_k = eps(tiny_model, x, t, pos), eps(tiny_model, x, t, 8)
    out = guide(tiny_model, pos, scale=4.0, negatives=[(8, 1.0)])(x, t)
    torch.testing.assert_close(out, e_k + 4.0 * (e_c - e_k), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(out, guide(tiny_model, pos, scale=4.0)(x, t))


def test_weighted_negatives_use_the_weighted_reference(tiny_model, batch):
    x, t, pos = batch
    out = guide(tiny_model, pos, scale=3.0, negatives=[(7, 3.0), (9, 1.0)])(x, t)
    ref = 0.75 * eps(tiny_model, x, t, 7) + 0.25 * eps(tiny_model, x, t, 9)
    torch.testing.assert_close(out, combine(eps(tiny_model, x, t, pos), ref, 3.0), atol=1e-5, rtol=1e-4)


def test_removal_pushes_uncond_away_from_k(tiny_model, batch):
    x, t, _ = batch
    null = torch.full((len(x),), NULL)
    out = guide(tiny_model, null, scale=2.0, negatives=[(7, 1.0)])(x, t)
    e_u, e_k = eps(tiny_model, x, t, NULL), eps(tiny_model, x, t, 7)
    torch.testing.assert_close(out, e_k + 2.0 * (e_u - e_k), atol=1e-5, rtol=1e-4)


def test_per_sample_negatives(tiny_model, batch):
    x, t, pos = batch
    ks = (pos + 1) % 10
    out = guide(tiny_model, pos, scale=2.0, negatives=[(ks, 1.0)])(x, t)
    torch.testing.assert_close(out, combine(eps(tiny_model, x, t, pos), eps(tiny_model, x, t, ks), 2.0),
                               atol=1e-5, rtol=1e-4)


class CountingModel(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.cfg, self.calls, self.batch_sizes = model, model.cfg, 0, []

    def forward(self, x, t, y):
        self.calls += 1
        self.batch_sizes.append(len(x))
        return self.model(x, t, y)


def test_all_branches_of_one_model_share_one_forward(tiny_model, batch):
    x, t, pos = batch
    counting = CountingModel(tiny_model)
    guide(counting, pos, scale=3.0, negatives=[(7, 1.0), (8, 1.0)])(x, t)
    assert counting.calls == 1 and counting.batch_sizes == [3 * len(x)]


def test_batched_forward_equals_separate_forwards(tiny_model, batch):
    x, t, pos = batch
    a, b = batched_forward(tiny_model, x, t, [pos, torch.full_like(pos, NULL)])
    torch.testing.assert_close(a, eps(tiny_model, x, t, pos), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b, eps(tiny_model, x, t, NULL), atol=1e-5, rtol=1e-4)


def test_autoguidance_with_the_same_model_is_unguided(tiny_model, batch):
    x, t, pos = batch
    out = guide(tiny_model, pos, scale=5.0, ref_model=tiny_model)(x, t)
    torch.testing.assert_close(out, eps(tiny_model, x, t, pos), atol=1e-5, rtol=1e-5)


def test_interval_covering_every_t_is_plain_guidance_and_empty_is_unguided(tiny_model, batch):
    x, t, pos = batch
    plain = guide(tiny_model, pos, scale=3.0)(x, t)
    torch.testing.assert_close(guide(tiny_model, pos, scale=3.0, interval=(0, 99))(x, t), plain)
    torch.testing.assert_close(guide(tiny_model, pos, scale=3.0, interval=(500, 900))(x, t),
                               eps(tiny_model, x, t, pos))
    part = guide(tiny_model, pos, scale=3.0, interval=(20, 60))(x, t)       # t = 30, 50 guided only
    inside = (t >= 20) & (t <= 60)
    torch.testing.assert_close(part[inside], plain[inside])
    torch.testing.assert_close(part[~inside], eps(tiny_model, x, t, pos)[~inside])


def test_rescale_zero_is_a_no_op_and_one_matches_the_positive_std(tiny_model, batch):
    x, t, pos = batch
    plain = guide(tiny_model, pos, scale=3.0)(x, t)
    torch.testing.assert_close(guide(tiny_model, pos, scale=3.0, rescale=0.0)(x, t), plain)
    full = guide(tiny_model, pos, scale=3.0, rescale=1.0)(x, t)
    torch.testing.assert_close(full.std(dim=(1, 2, 3)), eps(tiny_model, x, t, pos).std(dim=(1, 2, 3)))


def test_formula_is_linear_so_it_holds_for_x0(tiny_model, batch):
    x, t, pos = batch
    sched = NoiseSchedule("cosine", 100)
    e_c, e_u = eps(tiny_model, x, t, pos), eps(tiny_model, x, t, NULL)
    x0_of_guided = sched.eps_to_x0(x, t, combine(e_c, e_u, 3.0))
    guided_x0 = combine(sched.eps_to_x0(x, t, e_c), sched.eps_to_x0(x, t, e_u), 3.0)
    torch.testing.assert_close(x0_of_guided, guided_x0, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(negatives=[(10, 1.0)]), "negative classes"),
    (dict(negatives=[(3, 0.0)]), "weights"),
    (dict(negatives=[(3, -1.0)]), "weights"),
    (dict(scale=float("nan")), "finite"),
    (dict(scale=float("inf")), "finite"),
    (dict(interval=(50, 10)), "interval"),
    (dict(rescale=1.5), "rescale"),
])
def test_bad_guidance_is_a_user_error(tiny_model, kwargs, match):
    kwargs = {"scale": 2.0, **kwargs}
    with pytest.raises(UserError, match=match):
        guide(tiny_model, torch.tensor([1, 2]), **kwargs)


def test_positive_label_out_of_range_is_a_user_error(tiny_model):
    with pytest.raises(UserError, match="class labels"):
        guide(tiny_model, torch.tensor([11]), scale=2.0)


def test_guided_is_the_dataclass_the_samplers_call(tiny_model, batch):
    x, t, pos = batch
    g = guide(tiny_model, pos, scale=2.0)
    assert isinstance(g, Guided) and g(x, t).shape == x.shape
