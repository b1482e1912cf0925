"""`python sample.py` / `toydiff-sample`: sample a trained run with no guidance, CFG and negative guidance.

    python sample.py                                  # runs/digits: s = 1, CFG s = 3, negative s = 3, same seeds
    python sample.py --class 3 --negative 8 --scale 5
    python sample.py --class 3 --negative 8:0.7 --negative 5:0.3   # several weighted negatives
    python sample.py --class none --negative 7        # removal: "anything but 7"
    python sample.py --ref-ckpt runs/digits/ckpt_step500.pt   # + autoguidance (ref = an early checkpoint)

Writes grid_<set>.png per set and samples.npz (images in [0, 1], labels, negatives, scales, seeds, settings).
Guidance scale convention: eps = eps_ref + s (eps_pos - eps_ref); s = 1 is no guidance; Ho & Salimans' w = s - 1.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch

from . import checkpoint
from .errors import ArgumentParser, UserError, run_cli
from .figures import FIGURES
from .guidance import guide
from .pipeline import check_steps, generate, next_class, save_grid
from .runtime import resolve_device, writable_dir
from .sampling import SAMPLERS
from .schedule import NoiseSchedule


@dataclass
class SampleSet:
    """One guided set: `name` (none, cfg, negative, removal), labels (N,) with null for none, negatives
    as [(k_j (N,), a_j)], and the scale s."""
    name: str
    labels: torch.Tensor
    negatives: list[tuple[torch.Tensor, float]]
    scale: float


def parse_negative(text: str) -> tuple[int, float]:
    """'K' or 'K:WEIGHT' -> (K, weight)."""
    k, _, w = text.partition(":")
    try:
        k_int, weight = int(k), float(w) if w else 1.0
    except ValueError:
        raise UserError(f"--negative expects K or K:WEIGHT (e.g. 7 or 7:0.5), got {text!r}") from None
    if not (math.isfinite(weight) and weight > 0):
        raise UserError(f"--negative {text}: the weight must be a finite number > 0")
    return k_int, weight


def parse_class(text: str) -> str | int:
    if text in ("all", "none"):
        return text
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--class expects an integer, 'all' or 'none', got {text!r}") from None


def parse_interval(text: str) -> tuple[int, int]:
    """'LO:HI' -> (LO, HI), timestep indices."""
    lo, sep, hi = text.partition(":")
    try:
        interval = int(lo), int(hi)
    except ValueError:
        interval = None
    if not sep or interval is None or interval[0] > interval[1]:
        raise UserError(f"--interval expects LO:HI with integer timesteps LO <= HI (e.g. 200:800), got {text!r}")
    return interval


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="sample.py", description="Sample a toydiff run with CFG and negative guidance.")
    p.add_argument("--run", default="runs/digits", help="run folder holding ckpt.pt (default runs/digits)")
    p.add_argument("--ckpt", default=None, help="checkpoint file (overrides --run)")
    p.add_argument("--class", dest="cls", type=parse_class, default="all",
                   help="positive class: an integer, 'all' (one row per class, default) or 'none'")
    p.add_argument("--negative", type=parse_negative, action="append", default=[], metavar="K[:WEIGHT]",
                   help="negative class (repeatable; weights normalised to 1). Default for the negative set: "
                        "class (c + 1) mod K for row c")
    p.add_argument("--scale", type=float, default=3.0, help="guidance scale s (1 = none; w = s - 1)")
    p.add_argument("--sampler", choices=tuple(SAMPLERS), default="ddim")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: 50 DDIM, T DDPM)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0 deterministic, 1 DDPM-like)")
    p.add_argument("--n", type=int, default=8, help="samples per class row (default 8)")
    p.add_argument("--seed", type=int, default=0, help="sample i of a set uses seed + i")
    p.add_argument("--out", default=None, help="output folder (default <run>/samples)")
    p.add_argument("--device", default="auto")
    p.add_argument("--weights", choices=("ema", "model"), default="ema")
    p.add_argument("--batch-size", type=int, default=256)
    g = p.add_argument_group("beyond CFG")
    g.add_argument("--ref-ckpt", default=None, help="autoguidance: add a set guided away from the same labels "
                   "through this worse checkpoint (e.g. <run>/ckpt_step500.pt)")
    g.add_argument("--interval", type=parse_interval, default=None, metavar="LO:HI",
                   help="guide only for t in [LO, HI] (timestep indices 0..T-1), s = 1 elsewhere")
    g.add_argument("--rescale", type=float, default=0.0, help="guidance rescale phi (Lin et al. 2023); 0 = off")
    f = p.add_argument_group("tutorial figures (toydiff/figures.py)")
    f.add_argument("--figures", choices=("all", *FIGURES), default=None,
                   help="write these figures (default --out figures/) instead of sample grids; --class and "
                        "--negative pick the pos/neg pair (default 0 and 6), --n the grid row length")
    f.add_argument("--cloud-n", type=int, default=300, help="samples per cloud in the means/removal figures")
    e = p.add_argument_group("measuring (toydiff/metrics.py, toydiff/sweep.py; the judge is <run>/judge.pt)")
    e.add_argument("--eval", nargs="?", const=True, default=None, metavar="NPZ",
                   help="score the samples with the judge: print a table, write metrics.json beside "
                        "samples.npz; --eval FILE scores an existing samples.npz without sampling")
    e.add_argument("--sweep", action="store_true", help="metrics against s for cfg, negative, autoguidance and "
                   "interval guidance -> figures/sweep.png + sweep.json (--out overrides)")
    e.add_argument("--sweep-n", type=int, default=20, help="samples per class in the sweep (default 20)")
    e.add_argument("--sweep-scales", type=parse_scales, default=None, metavar="S,S,...",
                   help="scales of the sweep (default 0,1,1.5,2,3,5,8)")
    return p


def parse_scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        scales = ()
    if not scales or not all(math.isfinite(s) for s in scales):
        raise UserError(f"--sweep-scales expects comma-separated finite numbers like 0,1,3, got {text!r}")
    return scales


def main(argv: list[str] | None = None) -> None:
    run_cli(lambda: _main(argv))


def _main(argv: list[str] | None) -> None:
    args = build_parser().parse_args(argv)
    ckpt_path = args.ckpt or os.path.join(args.run, "ckpt.pt")
    out = args.out or os.path.join(os.path.dirname(ckpt_path) or ".", "samples")
    _check_args(args)
    if args.figures:
        from .figures import run_from_args
        return run_from_args(args, ckpt_path)
    if args.sweep:
        from .sweep import run_from_args as sweep
        return sweep(args, ckpt_path)
    if isinstance(args.eval, str):                 # --eval FILE: score an existing samples.npz, sample nothing
        from .metrics import evaluate_run
        return evaluate_run(args.eval, ckpt_path, device=resolve_device(args.device))
    device = resolve_device(args.device)
    model, cfg, step = checkpoint.load_model(ckpt_path, device=device, weights=args.weights)
    check_steps(args.steps, cfg.diffusion.timesteps)
    sets = plan_sets(args, cfg.model.num_classes)
    ref_model = None
    if args.ref_ckpt:
        ref_model, _ = checkpoint.load_reference(args.ref_ckpt, cfg, device=device, weights=args.weights)
        if args.cls != "none":
            sets.append(SampleSet("autoguidance", sets[0].labels, [], args.scale))
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    writable_dir(out, what="output folder", flag="--out")

    seeds = list(range(args.seed, args.seed + len(sets[0].labels)))
    results = []
    for s in sets:
        g = guide(model, s.labels, scale=s.scale, negatives=s.negatives, interval=args.interval,
                  rescale=args.rescale, ref_model=ref_model if s.name == "autoguidance" else None)
        images = generate(g, schedule, seeds=seeds, sampler=args.sampler, steps=args.steps, eta=args.eta,
                          batch_size=args.batch_size)
        path = os.path.join(out, f"grid_{s.name}.png")
        save_grid(images, path, nrow=args.n)
        print(f"wrote {path}  ({s.name}, s = {s.scale:g})")
        results.append((s, images))
    settings = dict(ckpt=ckpt_path, step=step, sampler=args.sampler, steps=args.steps, eta=args.eta,
                    seed=args.seed, n_per_class=args.n, weights=args.weights,
                    sets=[dict(name=s.name, scale=s.scale) for s in sets], ref_ckpt=args.ref_ckpt,
                    interval=args.interval, rescale=args.rescale,
                    convention="eps = eps_ref + s (eps_pos - eps_ref); w = s - 1")
    path = os.path.join(out, "samples.npz")
    write_npz(path, results, seeds, cfg.model.num_classes, settings)
    print(f"wrote {path}")
    if args.eval:
        from .metrics import evaluate_run
        evaluate_run(path, ckpt_path, device=device)


def _check_args(args) -> None:
    if args.n < 1:
        raise UserError(f"--n must be >= 1, got {args.n}")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be >= 1, got {args.steps}")
    if not math.isfinite(args.scale):
        raise UserError(f"--scale must be a finite number, got {args.scale}")
    if args.eta < 0 or not math.isfinite(args.eta):
        raise UserError(f"--eta must be >= 0, got {args.eta}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not 0 <= args.rescale <= 1:
        raise UserError(f"--rescale must lie in [0, 1], got {args.rescale}")
    if args.sweep_n < 1:
        raise UserError(f"--sweep-n must be >= 1, got {args.sweep_n}")


def plan_sets(args, num_classes: int) -> list[SampleSet]:
    """Which sets to sample, all on the same seeds: s = 1, CFG and negative guidance, or for --class none
    the unconditional set and removal ("anything but K") when --negative is given."""
    null = num_classes
    for k, _ in args.negative:
        if not 0 <= k < num_classes:
            raise UserError(f"--negative {k} is out of range: classes are 0..{num_classes - 1}")
    if args.cls == "none":
        labels = torch.full((args.n,), null)
        sets = [SampleSet("none", labels, [], 1.0)]
        if args.negative:
            sets.append(SampleSet("removal", labels, _negatives(args.negative, labels), args.scale))
        return sets
    if args.cls == "all":
        classes = torch.arange(num_classes)
    elif 0 <= args.cls < num_classes:
        classes = torch.tensor([args.cls])
    else:
        raise UserError(f"--class {args.cls} is out of range: classes are 0..{num_classes - 1} (or all, none)")
    labels = classes.repeat_interleave(args.n)                                 # (N,) one row per class
    if args.negative:
        negatives = _negatives(args.negative, labels)
        clash = sorted({k for k, _ in args.negative} & set(classes.tolist()))
        if clash:
            print(f"warning: negative class {clash} equals a positive class: there eps_ref = eps_pos for that "
                  "negative, so it exerts no push (with a single negative the row is unguided)", file=sys.stderr)
    else:
        negatives = [(next_class(labels, num_classes), 1.0)]                   # row c avoids class c + 1
    return [SampleSet("none", labels, [], 1.0),
            SampleSet("cfg", labels, [], args.scale),
            SampleSet("negative", labels, negatives, args.scale)]


def _negatives(specs: list[tuple[int, float]], labels: torch.Tensor) -> list[tuple[torch.Tensor, float]]:
    return [(torch.full_like(labels, k), w) for k, w in specs]


def write_npz(path: str, results: list[tuple[SampleSet, torch.Tensor]], seeds: list[int], num_classes: int,
              settings: dict) -> None:
    """samples.npz: images (N, C, H, W) float32 in [0, 1]; labels (N,) positive class, -1 for none;
    negatives (N, J) negative classes, -1 for none; negative_weights (N, J); scales (N,); sets (N,) str;
    seeds (N,); settings: a JSON string. Loads with np.load(allow_pickle=False)."""
    J = max([len(s.negatives) for s, _ in results] + [1])
    cols = {k: [] for k in ("images", "labels", "negatives", "negative_weights", "scales", "sets", "seeds")}
    for s, images in results:
        n = len(images)
        cols["images"].append(((images.cpu().float() + 1) / 2).numpy())
        lab = s.labels.clone()
        lab[lab == num_classes] = -1
        cols["labels"].append(lab.numpy())
        neg, wts = -np.ones((n, J), np.int64), np.zeros((n, J), np.float32)
        total = sum(w for _, w in s.negatives)
        for j, (k, w) in enumerate(s.negatives):
            neg[:, j], wts[:, j] = k.numpy(), w / total
        cols["negatives"].append(neg)
        cols["negative_weights"].append(wts)
        cols["scales"].append(np.full(n, s.scale, np.float32))
        cols["sets"].append(np.array([s.name] * n))
        cols["seeds"].append(np.array(seeds, np.int64))
    arrays = {k: np.concatenate(v) for k, v in cols.items()}
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays, settings=np.array(json.dumps(settings)))
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
