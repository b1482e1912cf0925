"""Checkpoints: plain dicts of tensors and Python types, written atomically, read with `weights_only=True`.

Layout (FORMAT_VERSION 1):
    {"format": "toydiff", "version": 1, "config": to_dict(Config), "step": int,
     "model": state_dict, "ema": state_dict, "ema_updates": int,
     "optimizer": state_dict, "scheduler": state_dict, "rng": {name: ByteTensor}}

`torch.load(weights_only=True)` only rebuilds tensors and plain containers; it never runs code from the
file, so a checkpoint from a stranger is data, not a program. A file that needs anything else is refused.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile

import torch

from .config import Config, from_dict
from .errors import UserError

FORMAT = "toydiff"
FORMAT_VERSION = 1


def save(payload: dict, path: str) -> None:
    """Write `payload` to `path` atomically: temp file in the same folder, fsync, `os.replace`.

    A crash at any moment leaves either the old file or the new one, never a truncated mix.
    """
    payload = {"format": FORMAT, "version": FORMAT_VERSION, **payload}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)            # make the rename itself durable
    finally:
        os.close(dir_fd)


def load(path: str, map_location: str | torch.device = "cpu") -> dict:
    """Read a toydiff checkpoint safely; every failure is a one-line UserError."""
    if os.path.isdir(path):
        path = os.path.join(path, "ckpt.pt")
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} not found; train one with `python train.py` or pass --ckpt PATH")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"refusing {path}: it holds objects other than tensors and plain types, which "
                        f"weights_only loading will not execute ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: truncated or not a torch file "
                        f"({type(err).__name__}); re-train or pick another checkpoint") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a toydiff checkpoint")
    version = ckpt.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(f"{path} has format version {version}, newer than this toydiff reads ({FORMAT_VERSION}); "
                        "upgrade toydiff")
    for key in ("config", "model", "ema", "step"):
        if key not in ckpt:
            raise UserError(f"{path} is missing {key!r}: not a complete toydiff checkpoint")
    return ckpt


def config_of(ckpt: dict) -> Config:
    return from_dict(ckpt["config"])


def load_model(path: str, device: str | torch.device = "cpu", weights: str = "ema"):
    """Rebuild the UNet stored in a checkpoint: returns (model in eval mode on `device`, Config, step)."""
    from .unet import UNet

    if weights not in ("ema", "model"):
        raise UserError(f"weights must be 'ema' or 'model', got {weights!r}")
    ckpt = load(path)
    cfg = config_of(ckpt)
    model = UNet(cfg.model)
    try:
        model.load_state_dict(ckpt[weights])
    except RuntimeError as err:
        raise UserError(f"{path}: weights do not match the stored config ({str(err).splitlines()[0]})") from None
    return model.to(device).eval().requires_grad_(False), cfg, int(ckpt["step"])
