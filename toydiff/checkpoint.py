"""Checkpoints: plain dicts of tensors and Python types, written atomically, read with `weights_only=True`.

Layout (FORMAT_VERSION 1):
    {"format": "toydiff", "version": 1, "config": to_dict(Config), "step": int,
     "model": state_dict, "ema": state_dict, "ema_updates": int,
     "optimizer": state_dict, "scheduler": state_dict, "rng": {name: ByteTensor}}

A shipped weights file (`weights.py`) keeps "config", "step" and "ema" only, plus "provenance".

`torch.load(weights_only=True)` only rebuilds tensors and plain containers; it never runs code from the
file, so a checkpoint from a stranger is data, not a program. A file that needs anything else is refused.
"""

from __future__ import annotations

import glob
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass

import torch

from .config import Config, ConfigError, check_config, check_model_config, from_dict
from .errors import UserError, note
from .files import TEMP_SUFFIX, atomic_write

FORMAT = "toydiff"
FORMAT_VERSION = 1
CKPT_FILE = "ckpt.pt"                   # <run>/ckpt.pt: the latest checkpoint of a run
LOG_FILE = "log.csv"                    # <run>/log.csv: step, loss, lr, seconds


def kept_name(step: int) -> str:
    """The file name of the checkpoint kept at `step` (`--keep-every`), e.g. for autoguidance's reference."""
    return f"ckpt_step{step}.pt"


def locate(run_dir: str, ckpt: str | None = None) -> tuple[str, str]:
    """(checkpoint path, run folder): `ckpt` if given (its folder is the run), else <run_dir>/ckpt.pt. The one
    place a run folder is derived from a checkpoint path; judge.pt and kept checkpoints live in the run folder."""
    if ckpt is None:
        return os.path.join(run_dir, CKPT_FILE), run_dir
    return ckpt, os.path.dirname(ckpt) or "."


def is_run_checkpoint(ckpt_path: str) -> bool:
    """Whether a checkpoint file is a training run's (ckpt.pt, ckpt_step{N}.pt), not a standalone weights file."""
    name = os.path.basename(ckpt_path)
    return name == CKPT_FILE or re.fullmatch(r"ckpt_step\d+\.pt", name) is not None


def judge_name(ckpt_path: str, dataset: str) -> str:
    """The file name of the judge cached beside a checkpoint of `dataset`: judge.pt in a run folder, <dataset>.judge.pt
    beside standalone weights files (weights/ holds several datasets, and several files of one share its judge)."""
    return "judge.pt" if is_run_checkpoint(ckpt_path) else f"{dataset}.judge.pt"


def default_out(ckpt_path: str, run_dir: str) -> str:
    """Where sample.py writes when no --out is given: <run>/samples for a run's checkpoint, and for a standalone
    weights file <name>.pt runs/weights/<name>/samples (never into weights/, which a clone ships, nor into a run)."""
    if is_run_checkpoint(ckpt_path):
        return os.path.join(run_dir, "samples")
    return os.path.join("runs", "weights", os.path.splitext(os.path.basename(ckpt_path))[0], "samples")


def kept_checkpoints(run_dir: str) -> list[tuple[int, str]]:
    """(step, path) of every kept ckpt_step{N}.pt in `run_dir`, by step."""
    if not os.path.isdir(run_dir):
        return []
    found = (re.fullmatch(r"ckpt_step(\d+)\.pt", name) for name in os.listdir(run_dir))
    return sorted((int(m.group(1)), os.path.join(run_dir, m.group(0))) for m in found if m)


def run_checkpoints(run_dir: str) -> list[str]:
    """The checkpoint files of the run in `run_dir`: ckpt.pt (if there) and every kept one."""
    latest, _ = locate(run_dir)
    return ([latest] if os.path.isfile(latest) else []) + [path for _, path in kept_checkpoints(run_dir)]


def run_files(run_dir: str) -> list[str]:
    """Every file that makes `run_dir` a toydiff run: checkpoints and the training log."""
    log = os.path.join(run_dir, LOG_FILE)
    return run_checkpoints(run_dir) + ([log] if os.path.isfile(log) else [])


def check_run_dir(run_dir: str, *, resume: bool, overwrite: bool) -> str | None:
    """The checkpoint to resume from, or None for a fresh run. A folder holding any toydiff file (ckpt.pt, a kept
    ckpt_step*.pt, log.csv) is a run: never cleared by accident. Resuming takes ckpt.pt, or, when a run stopped
    before writing one, its newest kept checkpoint. Any of those names that is there but not a file is refused."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise UserError(f"--run {run_dir} is a file, not a folder")
    latest, _ = locate(run_dir)
    names = [latest, os.path.join(run_dir, LOG_FILE)] + [path for _, path in kept_checkpoints(run_dir)]
    odd = next((p for p in names if os.path.lexists(p) and not os.path.isfile(p)), None)
    if odd is not None:                         # a folder (or a dangling link, a FIFO) where the run keeps a file
        kind = "a folder" if os.path.isdir(odd) else "not a regular file"
        raise UserError(f"{odd} is {kind}, where a run keeps a file; move it out of {run_dir}, or pick another --run")
    found = run_files(run_dir)
    if resume:
        if os.path.isfile(latest):
            return latest
        kept = kept_checkpoints(run_dir)
        if kept:
            note(f"{latest} does not exist; resuming from the newest kept checkpoint {kept[-1][1]}")
            return kept[-1][1]
        raise UserError(f"nothing to resume: {run_dir} holds no checkpoint (ckpt.pt or ckpt_step*.pt); "
                        + ("pass --overwrite to start a new run there" if found else "drop --resume to start a new run"))
    if found and not overwrite:
        names = ", ".join(os.path.basename(p) for p in found[:3]) + (", ..." if len(found) > 3 else "")
        raise UserError(f"{run_dir} already holds a run ({names}); pass --resume to continue it, --overwrite to "
                        "replace it, or --run DIR for a new folder")
    return None


def save(payload: dict, path: str) -> None:
    """Write `payload` to `path` atomically and durably (`files.atomic_write`: temp file, fsync, `os.replace`);
    a failure is a `files.WriteError` and leaves the previous file as it was."""
    payload = {"format": FORMAT, "version": FORMAT_VERSION, **payload}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: torch.save(payload, f))


def remove_partial_writes(folder: str) -> list[str]:
    """Delete the temp files that `save` and the log's rewrite leave behind when their process is killed mid-write
    (kill -9, power loss); return their paths. Call it only where no other process writes into `folder`."""
    stale = [p for name in ("*.pt", LOG_FILE)
             for p in glob.glob(os.path.join(glob.escape(folder), f"{name}.*{TEMP_SUFFIX}"))]
    for path in stale:
        os.remove(path)
    return stale


def read(path: str, map_location: str | torch.device = "cpu", *, what: str = "checkpoint",
         fix: str = "re-train, or name another checkpoint") -> dict:
    """torch.load(weights_only=True) of any toydiff file (diffusion checkpoint or judge). Refuses, each as a
    one-line UserError ending in `fix`: unreadable files (with the OS's reason), files that are not torch zip
    archives (toydiff never unpickles anything else), pickled objects, foreign dicts, unknown format versions."""
    try:
        with open(path, "rb") as f:
            is_zip = zipfile.is_zipfile(f)
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror or type(err).__name__}); {fix}") from None
    if not is_zip:           # torch.save writes zip archives; anything else would reach the legacy unpickler
        raise UserError(f"{path} is not a toydiff {what} (not a torch zip archive: truncated, or another kind of "
                        f"file); {fix}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                 # torch's advice to retry unsafely is not ours
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # name the offending global, not torch's advice to retry with weights_only=False (that would run it)
        found = re.search(r"Unsupported (global: GLOBAL [\w.]+|operand \d+)", str(err))
        raise UserError(f"refusing {path}: it holds pickled objects other than tensors and plain types "
                        f"({found.group(0) if found else 'UnpicklingError'}); toydiff never executes them. "
                        "Use a file written by toydiff") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: a damaged torch archive ({type(err).__name__}); {fix}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a toydiff {what}; {fix}")
    version = ckpt.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"{path} has format version {version!r}, which no toydiff writes: a damaged {what}; {fix}")
    if version > FORMAT_VERSION:
        raise UserError(f"{path} has format version {version}, newer than this toydiff reads ({FORMAT_VERSION}); "
                        "upgrade toydiff")
    return ckpt


def load(path: str, map_location: str | torch.device = "cpu") -> dict:
    """Read a toydiff diffusion checkpoint safely (a folder means its ckpt.pt); every failure is a one-line
    UserError."""
    if os.path.isdir(path):
        path = os.path.join(path, CKPT_FILE)
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} not found; train one with `python train.py`, or name another")
    ckpt = read(path, map_location)
    for key in ("config", "ema", "step"):            # "model" and the training state: training runs only
        if key not in ckpt:
            raise UserError(f"{path} is missing {key!r}: not a complete toydiff checkpoint")
    if not isinstance(ckpt["step"], int) or isinstance(ckpt["step"], bool) or ckpt["step"] < 0:
        raise UserError(f"{path} has step {ckpt['step']!r}, not a count of steps: a damaged checkpoint")
    return ckpt


def config_of(ckpt: dict) -> Config:
    """The run's Config, checked like flags would be: a damaged config is a UserError, never a traceback."""
    try:
        cfg = from_dict(ckpt["config"])
        check_model_config(cfg.model)           # shapes the UNet can build, e.g. image size vs levels
        check_config(cfg)
    except ConfigError as err:
        raise UserError(f"the checkpoint's config is damaged: {err}") from None
    except (AttributeError, TypeError, ValueError) as err:
        raise UserError(f"the checkpoint's config is malformed ({type(err).__name__}); "
                        "not a toydiff checkpoint, or a damaged one") from None
    return cfg


@dataclass
class Run:
    """A checkpoint read once: the model rebuilt from it, its Config and step, and where it lives."""
    model: torch.nn.Module                 # in eval mode, no grad, on the device asked for
    cfg: Config
    step: int
    path: str                              # the checkpoint file
    ckpt: dict                             # everything the file holds (training state for --resume)


def model_from(ckpt: dict, path: str, device: str | torch.device = "cpu", weights: str = "ema") -> Run:
    """Rebuild the model (UNet or MLP, by the config's `kind`) stored in a loaded checkpoint `ckpt` (read from
    `path`)."""
    from .models import build_model

    if weights not in ("ema", "model"):
        raise UserError(f"weights must be 'ema' or 'model', got {weights!r}")
    if weights not in ckpt:
        raise UserError(f"{path} holds only {', '.join(k for k in ('ema', 'model') if k in ckpt)} weights (a "
                        f"shipped weights file keeps the EMA ones); drop --weights {weights}")
    cfg = config_of(ckpt)
    model = build_model(cfg.model)
    try:
        model.load_state_dict(ckpt[weights])
    except (RuntimeError, TypeError, AttributeError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"{path}: weights do not match the stored config ({first})") from None
    if not all(p.isfinite().all() for p in model.parameters()):
        raise UserError(f"{path}: its {weights} weights hold NaN or infinite values: a damaged or diverged "
                        "checkpoint; sample an earlier one (ckpt_step*.pt) or re-train")
    return Run(model.to(device).eval().requires_grad_(False), cfg, int(ckpt["step"]), path, ckpt)


def load_run(path: str, device: str | torch.device = "cpu", weights: str = "ema") -> Run:
    """`load` + `model_from`: the one read of a checkpoint file a command needs."""
    return model_from(load(path), path, device=device, weights=weights)


def load_reference(path: str, like: Config, device: str | torch.device = "cpu", weights: str = "ema") -> Run:
    """The worse model of autoguidance: `load_run(path)`, refused unless it has `like`'s classes, image shape
    and noise schedule (ref and pos must denoise the same x_t at the same t)."""
    ref = load_run(path, device=device, weights=weights)

    def task(c: Config) -> tuple:
        return c.model.num_classes, c.model.data_shape, c.diffusion
    if task(ref.cfg) != task(like):
        raise UserError(f"the autoguidance reference {path} has other classes, image shape or noise schedule than "
                        "the model it guides; autoguidance needs the same task")
    return ref
