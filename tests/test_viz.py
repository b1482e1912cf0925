"""Every figure renders a PNG (tiny arrays, a tiny run), and `sample.py --figures` writes the files; arrows are never
dropped, a GIF's frames share one palette, time runs in sampling order."""

import os

import matplotlib.image
import numpy as np
import pytest
import torch

from toydiff import animate, geometry, viz
from toydiff.sample_cli import main as sample_main

from conftest import tiny_config

NAMES = tuple(str(i) for i in range(10))


def check_png(path):
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.01                                               # not a blank canvas


def check_gif(path):
    """Several frames, each drawn only with the colours of the first frame's palette (one palette for all)."""
    from PIL import Image

    with Image.open(path) as im:
        assert im.n_frames > 1 and im.width > 100 and im.height > 100
        palette = {tuple(c) for c in np.asarray(im.getpalette()).reshape(-1, 3)}
        used = set()
        for i in range(im.n_frames):
            im.seek(i)
            used |= {tuple(c) for c in np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)}
    assert used <= palette


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


def test_arrow_is_never_dropped():
    """An arrow whose head leaves fixed limits is shortened into the view (its length written); on autoscaling axes
    the view grows to hold it; a long arrow is capped at max_length."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    frac = viz._arrow(ax, np.array([0.5, 0.5]), np.array([5.0, 0.5]), viz.CFG_C, "far")
    head = ax.texts[0].xy                                        # the first annotation is the arrow
    assert 0 < frac < 1 and 0 < head[0] < 1 and head[1] == 0.5
    assert any("length 4.5" in t.get_text() for t in ax.texts)
    assert viz._arrow(ax, np.array([0.2, 0.2]), np.array([0.3, 0.3]), viz.NEG_C, None) == 1.0
    assert viz._arrow(ax, np.array([0.1, 0.1]), np.array([0.1, 0.9]), viz.NEG_C, None, max_length=0.4) == 0.5
    fig2, ax2 = plt.subplots()
    ax2.scatter([0, 1], [0, 1])
    assert viz._arrow(ax2, np.array([0.0, 0.0]), np.array([4.0, -3.0]), viz.CFG_C, "grows") == 1.0
    assert ax2.get_xlim()[1] >= 4 and ax2.get_ylim()[0] <= -3
    plt.close(fig)
    plt.close(fig2)


def test_time_runs_in_sampling_order(tmp_path):
    """alignment.png and posterior.png both put t = T-1 on the left and t = 0 on the right."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(3)
    t = np.arange(0, 100, 10)
    shape = (2, 2, len(t), 4)
    al = geometry.Alignment(t=t, alpha_bar=np.linspace(1, 0, len(t)), pos=3, refs=[10, 8], mu_dist=np.ones(2),
                            cos=rng.uniform(-1, 1, shape), ratio=rng.uniform(0.1, 2, shape))
    ts = t[::-1]
    runs = [("a", rng.uniform(0, 1, (len(ts), 5)), rng.uniform(1, 5, (len(ts), 5)), rng.uniform(size=5) < 0.5)]
    seen = []
    real_save = viz._save
    viz._save = lambda fig, path: (seen.extend(a.get_xlim() for a in fig.axes if a.get_xlabel()),
                                   real_save(fig, path))
    try:
        viz.plot_alignment(str(tmp_path / "al.png"), al, pairwise=rng.uniform(1, 5, 20), ref_names=["null", "8"],
                           pos_name="3", scale=3.0, x0_note="x", exact_note="y")
        viz.plot_posterior(str(tmp_path / "post.png"), ts=ts, runs=runs, k_name="7", ceiling=20.0)
    finally:
        viz._save = real_save
    time_axes = [lim for lim in seen if lim[0] == 90]
    assert len(time_axes) == 4 and all(right == 0 for _, right in time_axes)
    plt.close("all")


def test_hero_and_animations(tmp_path, plane_kwargs):
    images = [torch.rand(6, 10, 1, 8, 8) * 2 - 1 for _ in range(2)]          # 6 scales, 5 rows x 2 seeds
    viz.plot_hero(str(tmp_path / "hero.png"), panels=[("CFG", images[0]), ("negative", images[1])],
                  scales=(0, 1, 2, 3, 5, 8), per_row=2, row_names=[list("abcde"), list("vwxyz")], title="hero")
    check_png(tmp_path / "hero.png")
    S, ts = 5, [80, 60, 40, 20, 0]
    sets = [(name, torch.rand(S, 6, 1, 8, 8) * 2 - 1, torch.rand(S, 6, 1, 8, 8) * 2 - 1) for name in "ab"]
    animate.animate_denoising(str(tmp_path / "den.gif"), sets=sets, ts=ts, alpha_bar=np.linspace(0.01, 1, S),
                              n_steps=S + 1, nrow=2, row_names=["x", "y", "z"],
                              row_means=torch.rand(3, 1, 8, 8) * 2 - 1, note="first step not shown")
    rng = np.random.default_rng(4)
    clouds = [("s = 1", rng.normal(size=(S, 20, 2)), None),
              ("CFG", rng.normal(size=(S, 20, 2)), np.array([[100.0, 0.0]] * S)),         # far off the view
              ("negative", rng.normal(size=(S, 20, 2)), rng.normal(size=(S, 2)))]
    animate.animate_plane(str(tmp_path / "plane.gif"), **plane_kwargs, pos=3, neg=8, clouds=clouds, ts=ts,
                          alpha_bar=np.linspace(0.01, 1, S), n_steps=S, note="")
    check_gif(tmp_path / "den.gif")
    check_gif(tmp_path / "plane.gif")


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
    for name in ("hero", "means", "trajectories", "alignment", "removal", "posterior", "grids"):
        check_png(out / f"{name}.png")
    for name in ("denoising", "plane"):
        check_gif(out / f"{name}.gif")
    text = capsys.readouterr().out
    assert "cos at the noisiest 10% of t, exact" in text and "judged 8" in text and "hero negative s = 0" in text


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
