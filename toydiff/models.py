"""The one place a model is built from its config: `ModelConfig.kind` picks the network."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig, check_model_config


def build_model(cfg: ModelConfig) -> nn.Module:
    """A fresh, randomly initialised eps-model for `cfg`: "unet" (`unet.UNet`, images) or "mlp" (`mlp.MLP`, vectors);
    both have `forward(x_t, t, y) -> eps`, `cfg` and `num_parameters()`."""
    from .mlp import MLP
    from .unet import UNet

    check_model_config(cfg)
    return {"unet": UNet, "mlp": MLP}[cfg.kind](cfg)


def cpu_threads(cfg: ModelConfig, device) -> int | None:
    """Torch threads for running this model on `device`: 1 for an MLP on the CPU (its matrices are too small to split;
    on a busy 2-core CPU two threads were measured ~30x slower), None (unchanged) otherwise; for `runtime.threads`."""
    return 1 if torch.device(device).type == "cpu" and cfg.kind == "mlp" else None
