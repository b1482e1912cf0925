"""Shared fixtures: tiny models and runs that build in well under a second on a CPU."""

from __future__ import annotations

import pytest
import torch

from toydiff.config import Config, DiffusionConfig, ModelConfig, TrainConfig
from toydiff.unet import UNet

torch.set_num_threads(2)


def tiny_config(**train) -> Config:
    """A 8x8 digits model small enough to train a few steps in a second."""
    return Config(model=ModelConfig(in_channels=1, image_size=8, num_classes=10, width=16, channel_mult=(1, 2),
                                    num_res_blocks=1, groups=4),
                  diffusion=DiffusionConfig(timesteps=100),
                  train=TrainConfig(**{"steps": 20, "batch_size": 16, "lr": 2e-3, "warmup": 5, "ckpt_every": 10,
                                       "log_every": 5, **train}))


@pytest.fixture
def tiny_model() -> UNet:
    """A tiny UNet with random (not zero) output weights, so different labels give different predictions."""
    torch.manual_seed(0)
    model = UNet(tiny_config().model).eval()
    for p in model.parameters():               # undo zero-init so every branch differs
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.05)
    return model


TINY_TRAIN_FLAGS = ["--width", "16", "--num-res-blocks", "1", "--channel-mult", "1,2", "--timesteps", "50",
                    "--batch-size", "16", "--log-every", "5", "--ckpt-every", "5", "--no-progress",
                    "--grid-scale", "2", "--threads", "2"]     # fixed: no timing-based choice in a test


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> str:
    """A digits run trained for 10 steps through the real CLI (shared read-only by the tests)."""
    from toydiff.train_cli import main

    run = str(tmp_path_factory.mktemp("run") / "digits")
    main(["--run", run, "--steps", "10", *TINY_TRAIN_FLAGS])
    return run
