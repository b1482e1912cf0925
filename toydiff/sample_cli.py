"""`python sample.py` / `toydiff-sample`: sample a trained run with no guidance, CFG and negative guidance.

    python sample.py                                  # runs/digits: s = 1, CFG s = 3, negative s = 3, same seeds
    python sample.py --class 3 --negative 8 --scale 5
    python sample.py --class 3 --negative 8:0.7 --negative 5:0.3   # several weighted negatives
    python sample.py --class none --negative 7        # removal: "anything but 7" (+ the exact baseline)
    python sample.py --class none --negative 7 --dynamic 1   # + posterior-aware removal (lambda = 1)
    python sample.py --ref-ckpt runs/digits/ckpt_step500.pt   # + autoguidance (ref = an early checkpoint)

One mode per call: sampling (the default, `--eval` to also score the samples), `--figures NAME`, `--sweep`, or
`--eval FILE` (score an existing samples.npz). A flag the chosen mode does not use is refused in one line, never
silently ignored. The study modes live in study_cli.py.

Writes grid_<set>.png per set and samples.npz (see toydiff/samples.py).
Guidance scale convention: eps = eps_ref + s (eps_pos - eps_ref); s = 1 is no guidance; Ho & Salimans' w = s - 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import torch

from . import checkpoint, cli, samples
from .cli import ArgumentParser, run_cli
from .errors import UserError
from .figures import FIGURES
from .files import output_dir
from .guidance import TRACKERS, check_classes, check_interval, guide
from .models import cpu_threads
from .pipeline import check_count, generate, next_class, quota_labels, save_grid
from .runtime import resolve_device, threads
from .sampling import SAMPLERS, Sampler, seed_range
from .samples import SampleSet
from .schedule import NoiseSchedule

# Every flag's default. The parser leaves each at None so a flag the user typed can be told from one they did not.
DEFAULTS = dict(run="runs/digits", ckpt=None, data_dir=None, device="auto", weights="ema", cls="all", negative=[], scale=3.0,
                sampler="ddim", sample_steps=None, eta=None, n=8, seed=0, out=None, batch_size=256, ref_ckpt=None,
                interval=None, rescale=0.0, dynamic=None, dynamic_max=20.0, tracker="two", figures=None, cloud_n=300,
                eval=None, sweep=False, sweep_n=20, sweep_scales=None)
_RUN = {"run", "ckpt", "data_dir", "device"}
_SAMPLER = {"weights", "sampler", "sample_steps", "eta", "seed", "out", "batch_size"}
MODES = {                                   # mode -> the flags it uses; every other flag is refused in that mode
    "sampling": _RUN | _SAMPLER | {"cls", "negative", "scale", "n", "ref_ckpt", "interval", "rescale", "eval",
                                   "dynamic", "dynamic_max", "tracker"},
    "--figures": _RUN | _SAMPLER | {"figures", "cls", "negative", "scale", "n", "cloud_n"},
    "--sweep": _RUN | _SAMPLER | {"sweep", "ref_ckpt", "interval", "sweep_n", "sweep_scales"},
    "--eval FILE": _RUN | {"eval"},
}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="sample.py", description="Sample a toydiff run with CFG and negative guidance.")
    p.add_argument("--run", type=cli.path, help="run folder holding ckpt.pt (default runs/digits)")
    p.add_argument("--ckpt", type=cli.path, help="checkpoint file (overrides --run)")
    p.add_argument("--data-dir", type=cli.path,
                   help="torchvision data folder for --figures, --sweep, --eval and removal (default: the run's; "
                        "shipped weights: ./data)")
    p.add_argument("--class", dest="cls", type=cli.class_choice,
                   help="positive class: an integer, 'all' (one row per class, default) or 'none'")
    p.add_argument("--negative", type=cli.negative, action="append", metavar="K[:WEIGHT]",
                   help="negative class (repeatable; weights normalised to 1). Default for the negative set: "
                        "class (c + 1) mod K for row c")
    p.add_argument("--scale", type=float, help="guidance scale s (default 3; 1 = none; w = s - 1)")
    p.add_argument("--sampler", choices=tuple(SAMPLERS),
                   help="ddim (default), ddpm, or dpm++2m (DPM-Solver++(2M): second order, deterministic)")
    p.add_argument("--sample-steps", type=int,
                   help="sampling steps (default: 50 DDIM, 20 DPM-Solver++, or T if fewer; T DDPM)")
    p.add_argument("--steps", action=_SampleStepsHint, nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--eta", type=float, help="DDIM eta (0 deterministic; 1 DDPM-like); default: the run's own "
                                             "(0, or 1 for the MNIST preset)")
    p.add_argument("--n", type=cli.positive_int, help="samples per class row (default 8)")
    p.add_argument("--seed", type=int, help="sample i of a set uses seed + i (default 0)")
    p.add_argument("--out", type=cli.path, help="output folder (default <run>/samples; figures/ for --figures and --sweep)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--weights", choices=("ema", "model"), help="ema (default) or model")
    p.add_argument("--batch-size", type=int, help="samples per forward batch (default 256)")
    g = p.add_argument_group("beyond CFG")
    g.add_argument("--ref-ckpt", type=cli.path, help="autoguidance: add a set guided away from the same labels "
                   "through this worse checkpoint (e.g. <run>/ckpt_step500.pt)")
    g.add_argument("--interval", type=cli.interval, metavar="LO:HI",
                   help="guide only for t in [LO, HI] (timestep indices 0..T-1), s = 1 elsewhere")
    g.add_argument("--rescale", type=float, help="guidance rescale phi (Lin et al. 2023); 0 = off (default)")
    g.add_argument("--dynamic", type=float, metavar="LAMBDA",
                   help="posterior-aware negative guidance (Koulischer et al. 2025, DNG): add a set 'dynamic' pushed "
                        "away from the negatives with s_t = 1 + LAMBDA p/(1 - p), p = p_t(k | x_t) tracked along the "
                        "chain, capped at --dynamic-max; LAMBDA = 1 is exact removal")
    g.add_argument("--dynamic-max", type=float, metavar="S", help="--dynamic: the ceiling of s_t (default 20)")
    g.add_argument("--tracker", choices=TRACKERS, help="--dynamic: carry p_t(k | x_t) from the branches already "
                   "computed ('two', default) or from every class in the batch ('all': K + 1 branches, normalised)")
    modes = p.add_argument_group("modes (at most one; default: sample)").add_mutually_exclusive_group()
    modes.add_argument("--figures", choices=("all", *FIGURES),
                       help="write these tutorial figures (default --out figures/) instead of sample grids; "
                            "--class and --negative pick the pos/neg pair (default: digits 0 and 6, else computed "
                            "from the data and printed), --n the grid row length")
    modes.add_argument("--sweep", action="store_true", default=None,
                       help="metrics against s for cfg, negative, autoguidance and interval guidance -> "
                            "figures/sweep.png + sweep.json (--out overrides)")
    modes.add_argument("--eval", nargs="?", const=True, type=cli.path, metavar="NPZ",
                       help="score the samples with the judge (<run>/judge.pt): print a table, write metrics.json "
                            "beside samples.npz; --eval FILE scores an existing samples.npz without sampling")
    f = p.add_argument_group("mode options")
    f.add_argument("--cloud-n", type=cli.positive_int, help="--figures: samples per cloud (default 300)")
    f.add_argument("--sweep-n", type=cli.positive_int, help="--sweep: samples per class (default 20)")
    f.add_argument("--sweep-scales", type=cli.float_list, metavar="S,S,...",
                   help="--sweep: the scales (default 0,1,1.5,2,3,5,8)")
    return p


class _SampleStepsHint(argparse.Action):
    """`--steps` is train.py's name for training steps; here it is refused with the right name."""

    def __call__(self, parser, namespace, values, option_string=None):
        raise UserError("sample.py counts sampling steps with --sample-steps (--steps is train.py's number of "
                        "training steps)")


def parse(argv: list[str] | None) -> tuple[str, argparse.Namespace]:
    """(mode, args with every default filled in); a flag the mode does not use is a UserError naming the mode."""
    args = build_parser().parse_args(argv)
    if args.figures:
        mode = "--figures"
    elif args.sweep:
        mode = "--sweep"
    elif isinstance(args.eval, str):
        mode = "--eval FILE"
    else:
        mode = "sampling"
    for dest, value in vars(args).items():
        if value is not None and dest not in MODES[mode]:
            users = [m for m, flags in MODES.items() if dest in flags]
            raise UserError(f"{_flag(dest)} is not used by {mode} (it applies to {' and '.join(users)}); drop it")
    if args.dynamic is None and (args.dynamic_max is not None or args.tracker is not None):
        raise UserError("--dynamic-max and --tracker set up --dynamic; add --dynamic LAMBDA or drop them")
    for dest, value in DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)
    return mode, args


def _flag(dest: str) -> str:
    return "--class" if dest == "cls" else "--" + dest.replace("_", "-")


def main(argv: list[str] | None = None) -> None:
    run_cli(lambda: _main(argv))


def _main(argv: list[str] | None) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("sample.py is a single process (sampling is not distributed across torchrun ranks); run "
                        "`python sample.py ...` without torchrun")
    mode, args = parse(argv)
    if mode != "sampling":
        from . import study_cli
        return study_cli.run(mode, args)
    sample(args)


def load_run(args: argparse.Namespace) -> tuple[checkpoint.Run, str, Sampler]:
    """The checkpoint named by --run / --ckpt, read once, and the sampler resolved for its T (every mode)."""
    Sampler(args.sampler, args.sample_steps, args.eta or 0.0, args.batch_size)   # bad flags: before any read
    ckpt_path, run_dir = checkpoint.locate(args.run, args.ckpt)
    run = checkpoint.load_run(ckpt_path, device=resolve_device(args.device), weights=args.weights)
    if args.eta is None:                                # the run's own DDIM eta (its config), for DDIM only
        args.eta = run.cfg.diffusion.eta if args.sampler == "ddim" else 0.0
    sampler = Sampler(args.sampler, args.sample_steps, args.eta, args.batch_size)
    run.cfg = with_data_dir(run.cfg, args.data_dir)
    if len(run.cfg.model.data_shape) != 3 and (args.figures or args.sweep or args.eval):
        flag = "--figures" if args.figures else "--sweep" if args.sweep else "--eval"
        raise UserError(f"{flag} judges images with a CNN; {ckpt_path} denoises vectors {run.cfg.model.data_shape}: "
                        f"its figures and exact measurements are python tutorial/01_exact_2d.py --ckpt {ckpt_path}")
    return run, run_dir, sampler.resolve(run.cfg.diffusion.timesteps)


def with_data_dir(cfg, data_dir: str | None):
    """`cfg` reading its dataset from `data_dir` (--data-dir) instead of where it was trained (None: unchanged)."""
    return cfg if data_dir is None else dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, data_dir=data_dir))


def sample(args: argparse.Namespace) -> None:
    """parse -> load, build every guided denoiser and the sampler (all checks) -> only then write."""
    run, run_dir, sampler = load_run(args)
    device = next(run.model.parameters()).device
    ref = checkpoint.load_reference(args.ref_ckpt, run.cfg, device=device, weights=args.weights) \
        if args.ref_ckpt else None
    prior = class_prior(run.cfg) if args.cls == "none" and args.negative else None
    sets = plan_sets(args, run.model, ref.model if ref else None, run.cfg.diffusion.timesteps, prior)
    seeds = seed_range(args.seed, len(sets[0].guided.pos))
    out = args.out or checkpoint.default_out(run.path, run_dir)
    with output_dir(out, what="output folder (--out)"):     # held: a second sample.py into it is refused
        schedule = NoiseSchedule.from_config(run.cfg.diffusion)
        results = []
        for s in sets:
            with threads(cpu_threads(run.cfg.model, device)):
                images = generate(s.guided, schedule, sampler, seeds=seeds)
            if len(images.shape) == 4:
                path = os.path.join(out, f"grid_{s.name}.png")
                save_grid(images, path, nrow=args.n)
            else:                                                      # points in R^2 (toy2d): a scatter
                from .viz2d import plot_points
                path = os.path.join(out, f"points_{s.name}.png")
                plot_points(path, images, s.guided.pos,
                            title=f"{s.name}, s = {s.guided.scale:g}, {sampler.label}")
            print(f"wrote {path}  ({s.name}, s = {s.guided.scale:g})")
            results.append((s, images))
        settings = dict(ckpt=run.path, step=run.step, sampler=sampler.label, sample_steps=sampler.sample_steps,
                        eta=sampler.eta, seed=args.seed, n_per_class=args.n, weights=args.weights,
                        ref_ckpt=args.ref_ckpt, interval=args.interval, rescale=args.rescale,
                        dynamic=args.dynamic, dynamic_max=args.dynamic_max, tracker=args.tracker,
                        convention="eps = eps_ref + s (eps_pos - eps_ref); w = s - 1")
        path = os.path.join(out, "samples.npz")
        samples.write(path, results, seeds, settings)
        print(f"wrote {path}")
        if args.eval:
            from .study_cli import evaluate_file
            evaluate_file(path, run.cfg, run.path, run_dir, device=device)


def class_prior(cfg) -> torch.Tensor:
    """(K,) class frequencies of the run's training split (the exact removal baseline draws its labels from it)."""
    from . import data

    train, info = data.load_dataset(cfg.train.dataset, cfg.train.data_dir)
    return data.class_prior(train.tensors[1], info.num_classes)


def plan_sets(args: argparse.Namespace, model: torch.nn.Module, ref_model: torch.nn.Module | None,
              T: int, prior=None) -> list[SampleSet]:
    """The sets to sample, all on the same seeds, each with its guided denoiser built (and so checked):
    s = 1, CFG and negative guidance (+ autoguidance with --ref-ckpt, + posterior-aware with --dynamic); for
    --class none the unconditional set and, with --negative, removal ("anything but K") and its exact baseline
    (labels from the training `prior` without K, in exact quotas, sampled at s = 1)."""
    K = model.cfg.num_classes
    check_interval(args.interval, T)
    common = dict(interval=args.interval, rescale=args.rescale)
    negatives = list(args.negative)
    dynamic = dict(scale=args.dynamic_max, dynamic=args.dynamic, tracker=args.tracker, **common)   # + negatives
    if args.cls == "none":
        if args.dynamic is not None and not negatives:
            raise UserError("--dynamic pushes away from negative classes: give --negative K")
        if ref_model is not None:
            raise UserError("--ref-ckpt (autoguidance) guides a positive class; --class none has none")
        labels = torch.full((check_count(args.n),), K)                         # the null label
        sets = [SampleSet("none", guide(model, labels, scale=1.0), "removal" if negatives else None)]
        if negatives:
            sets.append(SampleSet("removal", guide(model, labels, scale=args.scale, negatives=negatives, **common)))
            if args.dynamic is not None:
                sets.append(SampleSet("dynamic", guide(model, labels, negatives=negatives, **dynamic)))
            exact = quota_labels(prior, args.n, removed=[k for k, _ in negatives]).to(labels.device)
            sets.append(SampleSet("exact", guide(model, exact, scale=1.0, negatives=[(k, 1.0) for k, _ in negatives])))
        return sets
    classes = list(range(K)) if args.cls == "all" else [args.cls]
    check_classes(classes, K, what="the positive class (--class none asks for unconditional samples)")
    check_count(len(classes) * args.n)
    labels = torch.tensor(classes).repeat_interleave(args.n)                   # (N,) one row per class
    clash = sorted({k for k, _ in negatives} & set(classes))
    if not negatives:
        negatives = [(next_class(labels, K), 1.0)]                             # row c avoids class c + 1
    sets = [SampleSet("none", guide(model, labels, scale=1.0), "negative"),
            SampleSet("cfg", guide(model, labels, scale=args.scale, **common), "negative"),
            SampleSet("negative", guide(model, labels, scale=args.scale, negatives=negatives, **common))]
    if args.dynamic is not None:
        sets.append(SampleSet("dynamic", guide(model, labels, negatives=negatives, **dynamic)))
    if ref_model is not None:
        sets.append(SampleSet("autoguidance", guide(model, labels, scale=args.scale, ref_model=ref_model, **common),
                              "negative"))
    if clash:                                                                  # every set built: the input is valid
        print(f"warning: negative class {clash} equals a positive class: there eps_ref = eps_pos for that "
              "negative, so it exerts no push (with a single negative the row is unguided)", file=sys.stderr)
    return sets


if __name__ == "__main__":
    main()
