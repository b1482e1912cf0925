"""`python -m toydiff.weights SOURCE OUT --command CMD`: export a run's EMA weights with their provenance
(the work is in weights.py)."""

from __future__ import annotations

from . import checkpoint
from .cli import ArgumentParser, path, run_cli
from .weights import cpu_name, export, git_commit


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m toydiff.weights",
                       description="Export a run's EMA weights, with their provenance, to a shipped weights file.")
    p.add_argument("source", type=path, help="run folder (its ckpt.pt) or checkpoint file")
    p.add_argument("out", type=path, help="weights file to write, e.g. weights/digits.pt")
    p.add_argument("--command", required=True, help="the command that trained the run, e.g. 'python train.py'")
    p.add_argument("--commit", help="git commit the run was trained at (default: this checkout's)")
    p.add_argument("--device", help="what it trained on (default: this machine's CPU)")
    return p


def main(argv: list[str] | None = None) -> None:
    def _main():
        args = build_parser().parse_args(argv)
        prov = export(args.source, args.out, command=args.command, commit=args.commit or git_commit(),
                      device=args.device or cpu_name())
        print(f"wrote {args.out}: step {checkpoint.load(args.out)['step']}, "
              + ", ".join(f"{k} {v}" for k, v in prov.items()))
    run_cli(_main)
