"""The study modes of `python sample.py`: `--figures NAME`, `--sweep` and `--eval [FILE]`.

Each turns the parsed flags into typed values, builds and checks everything it will use, and only then writes.
The work itself is in figures.py, sweep.py and metrics.py, which never see a flag.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

from . import checkpoint, figures, samples, sweep
from .config import Config
from .errors import UserError
from .files import output_dir, write_json
from .guidance import check_classes, check_interval, guide
from . import judge as judges  # module access: judges.judge_for can be swapped (tests)
from .metrics import real_reference, evaluate_samples
from .pipeline import check_count, next_class
from .runtime import resolve_device
from .sample_cli import load_run, with_data_dir
from .schedule import NoiseSchedule


def run(mode: str, args: argparse.Namespace) -> None:
    {"--figures": make_figures, "--sweep": make_sweep, "--eval FILE": evaluate_existing}[mode](args)


def make_figures(args: argparse.Namespace) -> list[str]:
    """`--figures NAME`: the pair (pos, neg) from --class / --negative, default `Study.default_pair` (printed)."""
    if args.cls == "none":
        raise UserError("--figures needs a positive class: pass --class K (or leave the default)")
    if len(args.negative) > 1 or any(w != 1 for _, w in args.negative):
        raise UserError("--figures takes one negative class, without a weight (--negative K)")
    run, run_dir, sampler = load_run(args)
    K = run.cfg.model.num_classes
    study = figures.Study.of(run, run_dir, sampler)
    (default_pos, default_neg), why = study.default_pair()
    pos = default_pos if args.cls == "all" else args.cls
    neg = args.negative[0][0] if args.negative else default_neg
    check_classes([pos], K, what="the positive class")
    guide(run.model, torch.tensor([pos]), scale=args.scale, negatives=[(neg, 1.0)])     # the pair's rules, checked
    if pos == neg:
        raise UserError(f"--class and --negative are both {pos}: the figures need two different classes")
    classes = list(range(K)) if args.cls == "all" else [pos]
    check_count(args.cloud_n, "samples per cloud")
    check_count(len(classes) * args.n, "grid samples")
    if args.cls == "all" and not args.negative:                               # as sample.py: row c avoids c + 1
        grid_negatives = next_class(torch.tensor(classes), K).tolist()
    else:
        grid_negatives = [neg] * len(classes)
    absent = [c for c in dict.fromkeys((pos, neg)) if not (study.train_y == c).any()]
    if absent:                  # the figures start from its images: its mean, its x_t, its backdrop
        raise UserError(f"class {study.class_names[absent[0]]} has no images in the {study.dataset} training split "
                        f"the figures read; pick a pair present there with --class and --negative")
    with output_dir(args.out or "figures", what="output folder (--out)") as out:
        if args.cls == "all" or not args.negative:
            print(f"figures: pos = class {study.class_names[pos]}, neg = class {study.class_names[neg]} ({why})")
        return figures.make_figures(study, figures.FIGURES if args.figures == "all" else [args.figures], out=out,
                                    pos=pos, neg=neg, scale=args.scale, seed=args.seed, cloud_n=args.cloud_n,
                                    grid_classes=classes, grid_negatives=grid_negatives, grid_n=args.n)


def make_sweep(args: argparse.Namespace) -> dict:
    """`--sweep`: the judge's metrics against s for every guidance method -> sweep.png + sweep.json."""
    run, run_dir, sampler = load_run(args)
    device = next(run.model.parameters()).device
    ref_path = args.ref_ckpt or os.path.join(run_dir, checkpoint.kept_name(500))
    ref = None
    if args.ref_ckpt or os.path.isfile(ref_path):
        ref = checkpoint.load_reference(ref_path, run.cfg, device=device, weights=args.weights)
    else:
        print(f"note: {ref_path} does not exist, so the autoguidance line is skipped "
              "(train with --keep-every 500, or pass --ref-ckpt FILE)")
    schedule = NoiseSchedule.from_config(run.cfg.diffusion)
    check_interval(args.interval, schedule.T)
    check_count(args.sweep_n * run.cfg.model.num_classes, "samples per sweep point")
    plan = sweep.plan(run.model, schedule, ref_model=ref.model if ref else None,
                      scales=args.sweep_scales or sweep.SCALES, n_per_class=args.sweep_n, seed=args.seed,
                      interval=args.interval)
    with output_dir(args.out or "figures", what="output folder (--out)") as out:
        tc = run.cfg.train
        judge = judges.judge_for(run_dir, dataset=tc.dataset, data_dir=tc.data_dir, device=device,
                                 name=checkpoint.judge_name(run.path, tc.dataset))
        real = real_reference(judge, dataset=tc.dataset, data_dir=tc.data_dir)
        lo, hi = plan.interval
        print(f"sweep: {run.path} (step {run.step}); {args.sweep_n} per class x {run.cfg.model.num_classes} "
              f"classes, {sampler.label}, seeds {args.seed}..; s in {', '.join(f'{s:g}' for s in plan.scales)}; "
              f"interval t in [{lo}, {hi}]" + (f"; autoguidance ref {ref.path} (step {ref.step})" if ref else ""))
        t0 = time.time()
        result = sweep.run(plan, schedule, sampler, judge=judge, real=real)
        result["settings"].update(ckpt=run.path, step=run.step, ref_ckpt=ref.path if ref else None,
                                  ref_step=ref.step if ref else None, device=str(device),
                                  wall_seconds=round(time.time() - t0, 1))
        png_path, json_path = sweep.save(result, out)
        print(f"wrote {png_path} and {json_path} ({time.time() - t0:.0f} s)")
        return result


def evaluate_existing(args: argparse.Namespace) -> dict:
    """`--eval FILE`: score an existing samples.npz with the judge of the run's dataset, sampling nothing."""
    ckpt_path, run_dir = checkpoint.locate(args.run, args.ckpt)
    cfg = with_data_dir(checkpoint.config_of(checkpoint.load(ckpt_path)), args.data_dir)
    return evaluate_file(args.eval, cfg, ckpt_path, run_dir, device=resolve_device(args.device))


def evaluate_file(npz_path: str, cfg: Config, ckpt_path: str, run_dir: str, *, device: torch.device) -> dict:
    """Score a samples.npz with the judge of `cfg`'s dataset (cached beside the checkpoint `ckpt_path` in
    `run_dir`, `checkpoint.judge_name`), print the table and write metrics.json beside the samples."""
    m = cfg.model
    found = samples.read(npz_path, shape=(m.in_channels, m.image_size, m.image_size), num_classes=m.num_classes)
    judge = judges.judge_for(run_dir, dataset=cfg.train.dataset, data_dir=cfg.train.data_dir, device=device,
                             name=checkpoint.judge_name(ckpt_path, cfg.train.dataset))
    real = real_reference(judge, dataset=cfg.train.dataset, data_dir=cfg.train.data_dir)
    result = {**evaluate_samples(found, judge, real), "samples": os.path.abspath(npz_path)}
    path = os.path.join(os.path.dirname(os.path.abspath(npz_path)), "metrics.json")
    write_json(path, result)
    print(format_table(result))
    print(f"wrote {path}")
    return result


def _fmt(v: float, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.2f}"


def format_table(result: dict) -> str:
    """A small fixed-width table: one row per set, then the real reference."""
    head = (f"{'set':<14}{'n':>5}{'accuracy':>10}{'neg-rate':>10}{'TV':>7}{'TV-model':>10}{'FID':>8}"
            f"{'FID/class':>11}{'diversity':>11}")
    lines = [head, "-" * len(head)]
    rows = list(result["sets"].items()) + ([("real (train)", result["real"])] if "real" in result else [])
    for name, r in rows:
        lines.append(f"{name:<14}{r['n']:>5}{_fmt(r['accuracy'], True):>10}{_fmt(r['neg_rate'], True):>10}"
                     f"{_fmt(r.get('tv', math.nan)):>7}{_fmt(r.get('tv_model', math.nan)):>10}{_fmt(r['fid']):>8}"
                     f"{_fmt(r['fid_class_mean']):>11}{_fmt(r['diversity']):>11}")
    notes = [f"judge test accuracy {100 * result['judge_test_accuracy']:.2f}% (real test split)"]
    borrowed = {n: r["negatives_from"] for n, r in result["sets"].items() if r.get("negatives_from") not in (None, n)}
    if borrowed:
        notes.append("neg-rate of " + ", ".join(borrowed) + f" uses the negatives of the "
                     f"'{next(iter(borrowed.values()))}' set (same labels and seeds): the unguided baseline")
    models = {r["model_reference"] for r in result["sets"].values() if "model_reference" in r}
    if models:
        notes.append(f"TV-model: against the '{models.pop()}' set's classes with the set's negatives removed "
                     "(the model's own p(x | not k)); TV: against the training prior without them")
    for name, r in result["sets"].items():
        if math.isnan(r["accuracy"]) or "tv_model" in r:   # unconditional / removal sets: what classes came out
            freqs = " ".join(f"{c}:{100 * p:.0f}%" for c, p in enumerate(r["frequencies"]))
            notes.append(f"{name} class frequencies {freqs}")
    return "\n".join(lines + notes)
