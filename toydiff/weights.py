"""Shipped weights: a training run reduced to what sampling needs, with where it came from.

    python -m toydiff.weights runs/digits weights/digits.pt --command "python train.py"
    python -m toydiff.weights runs/digits/ckpt_step500.pt weights/digits_step500.pt --command "python train.py"

A weights file is a toydiff checkpoint (the same format, read by `checkpoint.load` with `weights_only=True`) that
keeps the EMA weights, the config and the step, drops the raw weights and the training state (optimizer, RNG,
scheduler: most of the bytes, and nothing a sampler reads), and adds `provenance`:

    {"command": how the run was trained, "seed": the training seed, "commit": the git commit it was trained at,
     "train_seconds": seconds of training up to `step` (from log.csv), "device": what it trained on,
     "torch": torch's version, "source": the checkpoint it was exported from, "exported": ISO date}

`python sample.py --ckpt weights/digits.pt` samples it; the judge that scores its samples is cached beside it as
weights/digits.judge.pt (`checkpoint.judge_name`).
"""

from __future__ import annotations

import csv
import datetime
import os
import subprocess
import torch

from . import checkpoint
from .errors import UserError
from .runtime import cpu_model


def _train_seconds(run_dir: str, step: int) -> float:
    """Seconds of training up to `step`, from the run's log.csv (NaN when the log has no row for it)."""
    log = os.path.join(run_dir, checkpoint.LOG_FILE)
    try:
        with open(log, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= step]
    except OSError:
        return float("nan")
    return float(rows[-1]["seconds"]) if rows else float("nan")


def git_commit(folder: str = ".") -> str:
    """The commit checked out in `folder` ("unknown" outside a git checkout), "+dirty" if files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def cpu_name() -> str:
    """The CPU's model name with its number of cores, e.g. '2-core AMD EPYC'."""
    return f"{os.cpu_count()}-core {cpu_model()}"


def export(source: str, out: str, *, command: str, commit: str, device: str) -> dict:
    """Write the EMA weights of checkpoint `source` (a file, or a run folder for its ckpt.pt) to `out` with their
    provenance; return the provenance. Checked before anything is written: `source` must load and rebuild."""
    ckpt_path, run_dir = checkpoint.locate(source) if os.path.isdir(source) else (source, os.path.dirname(source))
    ckpt = checkpoint.load(ckpt_path)
    run = checkpoint.model_from(ckpt, ckpt_path)              # the weights must rebuild the model they claim
    if os.path.abspath(out) == os.path.abspath(ckpt_path):
        raise UserError(f"{out} is the checkpoint being exported; name another file")
    if os.path.isdir(out):
        raise UserError(f"{out} is a folder; name the weights file, e.g. {os.path.join(out, 'digits.pt')}")
    provenance = dict(command=command, seed=run.cfg.train.seed, commit=commit,
                      train_seconds=_train_seconds(run_dir, run.step), device=device, torch=str(torch.__version__),
                      source=ckpt_path, exported=datetime.date.today().isoformat())
    # The trainer's data folder means nothing on a user's machine: the weights read ./data unless told otherwise.
    config = {**ckpt["config"], "train": {**ckpt["config"]["train"], "data_dir": None}}
    checkpoint.save({"config": config, "step": run.step, "ema": ckpt["ema"],
                     "provenance": provenance}, out)
    return provenance


if __name__ == "__main__":                  # `python -m toydiff.weights`: the front end lives in weights_cli.py
    from .weights_cli import main
    main()
