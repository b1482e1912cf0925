"""The judge: trains on real digits, predicts int64 classes, and round-trips through judge.pt as weights_only data."""

import os

import pytest
import torch

from toydiff import judge as judge_module
from toydiff.judge import Judge, JudgeConfig, judge_for, load_judge, predict, save_judge, train_judge
from toydiff.data import load_dataset
from toydiff.errors import UserError


@pytest.fixture(scope="session")
def digits_judge():
    """A digits judge trained for 150 steps (~2 s); shared read-only by the judge and metrics tests."""
    train, info = load_dataset("digits")
    test, _ = load_dataset("digits", train=False)
    cfg = judge_module.config_for("digits", info.shape, info.num_classes)
    return train_judge(cfg, *train.tensors, test_x=test.tensors[0], test_y=test.tensors[1], max_steps=150,
                       verbose=False)


def test_judge_learns_digits(digits_judge):
    assert digits_judge.test_accuracy >= 0.9                 # the full judge (judge_for) reaches ~99%
    assert not digits_judge.training


def test_predict_and_features_shapes(digits_judge):
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    pred = predict(digits_judge, x)
    assert pred.shape == (5,) and pred.dtype == torch.int64 and ((0 <= pred) & (pred < 10)).all()
    assert digits_judge.features(x).shape == (5, digits_judge.cfg.feature_dim)
    assert predict(digits_judge, torch.empty(0, 1, 8, 8)).shape == (0,)


def test_judge_round_trips_with_weights_only(digits_judge, tmp_path):
    path = str(tmp_path / "judge.pt")
    save_judge(digits_judge, path, dataset="digits")
    blob = torch.load(path, weights_only=True)                 # plain data: no code runs on load
    assert blob["kind"] == "judge" and blob["test_accuracy"] == pytest.approx(digits_judge.test_accuracy)
    loaded = load_judge(path, dataset="digits")
    x = load_dataset("digits", train=False)[0].tensors[0][:50]
    assert torch.equal(predict(loaded, x), predict(digits_judge, x))
    assert torch.allclose(loaded.features(x), digits_judge.features(x))
    assert loaded.test_accuracy == pytest.approx(digits_judge.test_accuracy)


def test_judge_for_loads_the_cache_without_training(digits_judge, tmp_path, monkeypatch):
    save_judge(digits_judge, str(tmp_path / "judge.pt"), dataset="digits")
    monkeypatch.setattr(judge_module, "train_judge", lambda *a, **k: pytest.fail("retrained a cached judge"))
    judge = judge_for(str(tmp_path), dataset="digits", verbose=False)
    assert not judge.training and judge.test_accuracy == pytest.approx(digits_judge.test_accuracy)


def test_judge_for_trains_and_saves_when_absent(tmp_path, monkeypatch):
    real_train = judge_module.train_judge
    monkeypatch.setattr(judge_module, "train_judge", lambda *a, **k: real_train(*a, **{**k, "max_steps": 5}))
    judge = judge_for(str(tmp_path / "run"), dataset="digits", verbose=False)
    assert os.path.isfile(tmp_path / "run" / "judge.pt") and 0 <= judge.test_accuracy <= 1
    assert judge_for(None, dataset="digits", verbose=False) is not None            # None: no cache written


def test_foreign_or_unsafe_judge_files_are_refused(digits_judge, tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="not a toydiff judge"):
        load_judge(str(tmp_path / "foreign.pt"))
    torch.save({"evil": Judge(JudgeConfig())}, tmp_path / "pickled.pt")            # a pickled module object
    with pytest.raises(UserError, match="refusing"):
        load_judge(str(tmp_path / "pickled.pt"))
    (tmp_path / "truncated.pt").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(UserError, match="not a torch zip archive"):
        load_judge(str(tmp_path / "truncated.pt"))
    save_judge(digits_judge, str(tmp_path / "judge.pt"), dataset="digits")
    with pytest.raises(UserError, match="judges 'digits', not 'mnist'"):
        load_judge(str(tmp_path / "judge.pt"), dataset="mnist")


def test_shift_augmentation_moves_content_and_pads_with_background():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(64, 1, 1, 1)
    y = judge_module._shift(x, 1, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert (y == -1).any() and not torch.equal(y, x)                                # some shifted, padded with -1
    for img in y:                                                                   # each a translate of the original
        kept = img[img >= 0]
        assert set(kept.tolist()) <= set(range(16))
