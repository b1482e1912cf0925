"""CIFAR-10 end to end on generated 3-channel data in torchvision's layout: train, sample, every figure and both
animations. (No CIFAR quality is measured anywhere: see the README.)"""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from toydiff import judge as judge_module
from toydiff.sample_cli import main as sample_main
from toydiff.train_cli import main as train_main

from test_data import cifar_files


@pytest.fixture
def cifar_run(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    cifar_files(tmp_path / "data", monkeypatch, per_batch=8)
    torch.manual_seed(0)
    fake = judge_module.Judge(judge_module.config_for("cifar10", (3, 32, 32), 10)).eval()
    monkeypatch.setattr(judge_module, "judge_for", lambda *args, **kwargs: fake)        # untrained, for speed
    run = str(tmp_path / "run")
    train_main(["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--run", run, "--steps", "3",
                "--width", "16", "--channel-mult", "1,2", "--num-res-blocks", "1", "--timesteps", "20",
                "--batch-size", "8", "--no-progress", "--grid-scale", "2"])
    return run


def test_cifar10_trains_samples_and_draws_every_figure(cifar_run, tmp_path):
    out = tmp_path / "s"
    sample_main(["--run", cifar_run, "--n", "1", "--sample-steps", "2", "--out", str(out)])
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (30, 3, 32, 32) and np.isfinite(images).all()
    figs = tmp_path / "f"
    sample_main(["--run", cifar_run, "--figures", "all", "--n", "1", "--cloud-n", "4", "--sample-steps", "3",
                 "--out", str(figs)])                 # 3 steps: the animations skip the one at abar_t < 1e-3
    for name in ("means", "trajectories", "alignment", "removal", "posterior", "grids"):
        assert Image.open(figs / f"{name}.png").size[0] > 100, name
    for name in ("denoising", "plane"):
        gif = Image.open(figs / f"{name}.gif")
        assert gif.format == "GIF" and gif.n_frames >= 2, name
    written = sorted(n for n in os.listdir(figs) if not n.startswith("."))      # .lock: the folder's lock file
    assert written == sorted([f"{n}.png" for n in ("means", "trajectories", "alignment", "removal", "posterior",
                                                   "grids", "hero")] + ["denoising.gif", "plane.gif"])
