"""Every figure renders a PNG (tiny arrays, a tiny run), and `sample.py --figures` writes the files."""

import os

import matplotlib.image
import numpy as np
import pytest
import torch

from toydiff import geometry, viz
from toydiff.sample_cli import main as sample_main

from conftest import tiny_config

NAMES = tuple(str(i) for i in range(10))


def check_png(path):
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.01                                               # not a blank canvas


@pytest.fixture
def plane_kwargs():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 5)
    means = rng.normal(size=(11, 2))
    return dict(data2d=means[labels] + 0.2 * rng.normal(size=(50, 2)), labels=labels, means2d=means,
                explained=np.array([0.2, 0.1]), class_names=NAMES)


def test_plot_means_and_trajectories(tmp_path, plane_kwargs):
    rng = np.random.default_rng(1)
    clouds = [(name, rng.normal(size=(20, 2)), 0.9, 0.05) for name in ("s = 1", "CFG", "negative")]
    viz.plot_means(str(tmp_path / "means.png"), **plane_kwargs, pos=3, neg=8, scale=3.0, clouds=clouds)
    paths = [(name, rng.normal(size=(6, 4, 2)).cumsum(0)) for name in ("s = 1", "CFG", "negative")]
    viz.plot_trajectories(str(tmp_path / "traj.png"), **plane_kwargs, pos=3, neg=8, scale=3.0, paths=paths)
    check_png(tmp_path / "means.png")
    check_png(tmp_path / "traj.png")


def test_plot_alignment_removal_and_grids(tmp_path):
    rng = np.random.default_rng(2)
    t = np.arange(0, 100, 10)
    cos = rng.uniform(-1, 1, size=(2, 2, len(t), 8))
    cos[1, 0, :3] = np.nan                                                          # no push at low noise
    al = geometry.Alignment(t=t, alpha_bar=np.linspace(1, 0, len(t)), pos=3, refs=[10, 8],
                            mu_dist=np.array([2.0, 3.0]), cos=cos, ratio=rng.uniform(0.01, 2, size=cos.shape))
    viz.plot_alignment(str(tmp_path / "al.png"), al, pairwise=rng.uniform(1, 5, 100), ref_names=["null", "class 8"],
                       pos_name="3", scale=3.0, x0_note="test", exact_note="all")
    freqs = [(name, rng.dirichlet(np.ones(10)), tv) for name, tv in
             (("uncond", np.nan), ("static, s = 2", 0.4), ("static, s = 3", 0.5), ("posterior-aware", 0.05))]
    viz.plot_removal(str(tmp_path / "rm.png"), freqs=freqs, class_names=NAMES, k=7, n=30)
    grids = [(title, torch.rand(6, 1, 8, 8) * 2 - 1) for title in ("a", "b", "c")]
    viz.plot_grids(str(tmp_path / "grids.png"), grids=grids, nrow=3, row_names=["x", "y"])
    ts = np.arange(999, -1, -100)
    runs = [(name, rng.uniform(0, 1, (len(ts), 20)), rng.uniform(1, 20, (len(ts), 20)), rng.uniform(size=20) < 0.2)
            for name in ("a", "b")]
    viz.plot_posterior(str(tmp_path / "post.png"), ts=ts, runs=runs, k_name="7", ceiling=20.0)
    for name in ("al.png", "rm.png", "grids.png", "post.png"):
        check_png(tmp_path / name)


@pytest.fixture
def fake_judge(monkeypatch):
    """An untrained judge, so the figure pipeline runs without training one (classifier tests cover that)."""
    from toydiff import judge as judge_module

    torch.manual_seed(0)
    judge = judge_module.Judge(judge_module.config_for("digits", (1, 8, 8), 10)).eval()
    monkeypatch.setattr(judge_module, "judge_for", lambda *args, **kwargs: judge)


def test_sample_figures_all_writes_every_png(trained_run, tmp_path, fake_judge, capsys):
    out = tmp_path / "figs"
    sample_main(["--run", trained_run, "--figures", "all", "--out", str(out), "--cloud-n", "4", "--n", "2",
                 "--sample-steps", "3", "--class", "3", "--negative", "8", "--device", "cpu"])
    for name in ("means", "trajectories", "alignment", "removal", "posterior", "grids"):
        check_png(out / f"{name}.png")
    text = capsys.readouterr().out
    assert "cos at the noisiest 10% of t, exact" in text and "judged 8" in text


@pytest.mark.parametrize("argv, message", [
    (["--class", "none"], "positive class"),
    (["--class", "3", "--negative", "3"], "two different classes"),
    (["--negative", "12"], "must lie in 0..9"),
    (["--cloud-n", "0"], "--cloud-n"),
])
def test_sample_figures_bad_input_is_one_line(trained_run, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        sample_main(["--run", trained_run, "--figures", "means", "--out", str(tmp_path / "f"), *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not os.path.exists(tmp_path / "f" / "means.png")
