"""The lessons' front end (tutorial/NN_*.py): `--ckpt` and `--out`, checked before anything is written.

    args = lesson_cli.start(__doc__, ckpt="weights/digits.pt", out="figures/lessons")
    st = lesson_cli.study(args)                  # the checkpoint's model, data, class means and judge

A lesson is a script a student reads top to bottom; this module keeps the plumbing out of it: the two flags, the
promise every toydiff command keeps (bad input is one `error: ...` line and exit code 2, never a traceback), and
the wall time printed at the end. `TOYDIFF_QUICK=1` (CI) runs the same code on fewer samples: its numbers then
differ from those docs/tutorial.md quotes, which come from the full run.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import time

import torch

from . import checkpoint
from .cli import ArgumentParser, path
from .data import load_dataset
from .errors import UserError
from .files import writable_dir
from .runtime import resolve_device
from .sampling import Sampler

QUICK = os.environ.get("TOYDIFF_QUICK", "") not in ("", "0")
T0 = time.perf_counter()                # the lesson's clock starts when its imports reach toydiff


def sized(full: int, quick: int) -> int:
    """A sample count: `full` for the lesson as documented, `quick` under TOYDIFF_QUICK=1 (CI)."""
    return quick if QUICK else full


def _one_line_errors(kind, err, tb) -> None:
    """sys.excepthook: a UserError (bad input) is one line and exit 2, as in train.py and sample.py."""
    if issubclass(kind, UserError):
        print(f"error: {err}", file=sys.stderr)
        os._exit(2)                                  # no atexit timing line after a refusal
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted (Ctrl-C); files already complete were kept, none is half-written", file=sys.stderr)
        os._exit(130)
    sys.__excepthook__(kind, err, tb)


def start(doc: str, *, ckpt: str, out: str, data: bool = False, device: str = "auto",
          argv: list[str] | None = None) -> argparse.Namespace:
    """Parse --ckpt (default `ckpt`) and --out (default `out`), read the checkpoint once (`args.run`), check that
    the output folder is writable (creating it), and print the lesson's title; at exit print the wall time.

    `data=True` (a torchvision dataset: MNIST) adds --data-dir and --download and loads the training split into
    `args.train` before anything is written, so a missing dataset is one line and no empty folder."""
    sys.excepthook = _one_line_errors
    # One thread: a lesson's batches are small, and torch's two threads beside any other busy process collapse
    # (lesson 04 on a 2-core EPYC with one other job: 335 s with two threads, 41 s with one).
    torch.set_num_threads(1)
    title = doc.strip().splitlines()[0]
    p = ArgumentParser(prog=os.path.basename(sys.argv[0]), description=title)
    p.add_argument("--ckpt", type=path, default=ckpt, help=f"checkpoint or weights file (default {ckpt})")
    p.add_argument("--out", type=path, default=out, help=f"folder for the figures (default {out})")
    if data:
        p.add_argument("--data-dir", type=path, help="torchvision data folder (default: the checkpoint's, or ./data)")
        p.add_argument("--download", action="store_true", help="download the dataset into --data-dir")
    args = p.parse_args(argv)
    if not os.path.isfile(args.ckpt):
        raise UserError(f"--ckpt {args.ckpt} not found; the shipped weights are in weights/ (a fresh clone has "
                        "them), or train a run with `python train.py` and pass --ckpt runs/digits/ckpt.pt")
    args.run = checkpoint.load_run(args.ckpt, device=resolve_device(device))   # not a checkpoint: one line, now
    args.train = None
    if data:
        cfg = args.run.cfg.train
        args.data_dir = args.data_dir or cfg.data_dir
        args.train = load_dataset(cfg.dataset, args.data_dir, train=True, download=args.download)
    writable_dir(args.out, what="output folder (--out)")
    print(title + (" [TOYDIFF_QUICK: fewer samples, numbers differ from the docs]" if QUICK else ""))
    atexit.register(lambda: print(f"done in {time.perf_counter() - T0:.0f} s"))
    return args


def study(args: argparse.Namespace, sampler: Sampler = Sampler()):
    """The checkpoint `start` read, with its data, PCA plane, class means and judge (`figures.Study`); the judge is
    cached beside the checkpoint (weights/<dataset>.judge.pt ships with the weights)."""
    from .figures import Study

    return Study.of(args.run, os.path.dirname(args.ckpt) or ".", sampler, train=args.train,
                    data_dir=getattr(args, "data_dir", None))
