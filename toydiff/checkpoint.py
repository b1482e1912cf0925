"""Checkpoints: plain dicts of tensors and Python types, written atomically, read with `weights_only=True`.

Layout (FORMAT_VERSION 1):
    {"format": "toydiff", "version": 1, "config": to_dict(Config), "step": int,
     "model": state_dict, "ema": state_dict, "ema_updates": int,
     "optimizer": state_dict, "scheduler": state_dict, "rng": {name: ByteTensor}}

`torch.load(weights_only=True)` only rebuilds tensors and plain containers; it never runs code from the
file, so a checkpoint from a stranger is data, not a program. A file that needs anything else is refused.
"""

from __future__ import annotations

import glob
import os
import pickle
import re
import tempfile
import zipfile

import torch

from .config import Config, check_config, from_dict
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


def remove_partial_writes(folder: str) -> list[str]:
    """Delete the temp files `save` leaves behind when its process is killed mid-write (kill -9, power loss);
    return their paths. Call it only where no other process is saving into `folder`."""
    stale = glob.glob(os.path.join(glob.escape(folder), "*.pt.*.tmp"))
    for path in stale:
        os.remove(path)
    return stale


def read(path: str, map_location: str | torch.device = "cpu", *, what: str = "checkpoint") -> dict:
    """torch.load(weights_only=True) of any toydiff file (diffusion checkpoint or judge): refuses pickled
    objects, unreadable files, foreign dicts and newer format versions, each as a one-line UserError."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # name the offending global, not torch's advice to retry with weights_only=False (that would run it)
        found = re.search(r"Unsupported (global: GLOBAL [\w.]+|operand \d+)", str(err))
        raise UserError(f"refusing {path}: it holds pickled objects other than tensors and plain types "
                        f"({found.group(0) if found else 'UnpicklingError'}); toydiff never executes them. "
                        "Use a file written by toydiff") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: truncated or not a torch file "
                        f"({type(err).__name__}); re-train or pick another {what}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a toydiff {what}")
    version = ckpt.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(f"{path} has format version {version}, newer than this toydiff reads ({FORMAT_VERSION}); "
                        "upgrade toydiff")
    return ckpt


def load(path: str, map_location: str | torch.device = "cpu") -> dict:
    """Read a toydiff diffusion checkpoint safely (a folder means its ckpt.pt); every failure is a one-line
    UserError."""
    if os.path.isdir(path):
        path = os.path.join(path, "ckpt.pt")
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} not found; train one with `python train.py` or pass --ckpt PATH")
    ckpt = read(path, map_location)
    for key in ("config", "model", "ema", "step"):
        if key not in ckpt:
            raise UserError(f"{path} is missing {key!r}: not a complete toydiff checkpoint")
    if not isinstance(ckpt["step"], int) or isinstance(ckpt["step"], bool) or ckpt["step"] < 0:
        raise UserError(f"{path} has step {ckpt['step']!r}, not a count of steps: a damaged checkpoint")
    return ckpt


def config_of(ckpt: dict) -> Config:
    """The run's Config, checked like flags would be: a damaged config is a UserError, never a traceback."""
    from .unet import check_model_config

    try:
        cfg = from_dict(ckpt["config"])
        check_model_config(cfg.model)           # shapes the UNet can build, e.g. image size vs levels
        check_config(cfg)
    except (AttributeError, TypeError, ValueError) as err:
        raise UserError(f"the checkpoint's config is malformed ({type(err).__name__}); "
                        "not a toydiff checkpoint, or a damaged one") from None
    return cfg


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
    except (RuntimeError, TypeError, AttributeError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"{path}: weights do not match the stored config ({first})") from None
    return model.to(device).eval().requires_grad_(False), cfg, int(ckpt["step"])


def load_reference(path: str, like: Config, device: str | torch.device = "cpu", weights: str = "ema"):
    """The worse model of autoguidance: load_model(path), refused unless it has `like`'s classes, image shape and
    noise schedule (ref and pos must denoise the same x_t at the same t). Returns (model, step)."""
    model, cfg, step = load_model(path, device=device, weights=weights)

    def task(c: Config) -> tuple:
        return c.model.num_classes, c.model.in_channels, c.model.image_size, c.diffusion
    if task(cfg) != task(like):
        raise UserError(f"--ref-ckpt {path} has other classes, image shape or noise schedule than the model it "
                        "guides; autoguidance needs the same task")
    return model, step
