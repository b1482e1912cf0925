"""`python sample.py --sweep`: the judge's metrics against the guidance scale s, one line per guidance method.

    python sample.py --sweep                       # runs/digits -> figures/sweep.png + figures/sweep.json

Every method samples the same labels (20 per class by default) from the same seeds with DDIM-50:
    cfg            pos = c, ref = null                                     (Ho & Salimans 2022)
    negative       pos = c, ref = (c + 1) mod K                            (the negative replaces the uncond)
    autoguidance   pos = c, ref = c through an early checkpoint            (Karras et al. 2024)
                   (default <run>/ckpt_step500.pt, or --ref-ckpt; the line is skipped if there is none)
    interval       CFG only for t in [0.2 T, 0.8 T] (timestep indices), s = 1 elsewhere
                   (Kynkaanniemi et al. 2024; --interval LO:HI overrides)
s = 1 is the same unguided set for every method (sampled once). The negative-class rate is measured against
(c + 1) mod K for every method, so the cfg / autoguidance / interval lines show the rate without a push.
"""

from __future__ import annotations

import json
import os
import time

import torch

from . import checkpoint
from .classifier import judge_for
from .guidance import guide
from .metrics import RealReference, evaluate, jsonable, real_reference, real_row
from .pipeline import check_steps, class_rows, generate, next_class
from .runtime import resolve_device, writable_dir
from .schedule import NoiseSchedule

SCALES = (0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)
METRICS = ("accuracy", "neg_rate", "diversity", "fid", "fid_class_mean")


def default_interval(T: int) -> tuple[int, int]:
    """The middle of the chain, [0.2 T, 0.8 T] as timestep indices (t = 0 is the least noise)."""
    return round(0.2 * T), round(0.8 * T)


def run_sweep(model: torch.nn.Module, schedule: NoiseSchedule, *,
              judge,                                   # classifier.Judge
              real: RealReference,
              ref_model: torch.nn.Module | None,       # early checkpoint for autoguidance; None skips that line
              scales: tuple[float, ...] = SCALES,
              n_per_class: int = 20,
              sampler: str = "ddim",
              steps: int | None = 50,
              seed: int = 0,
              interval: tuple[int, int] | None = None,  # None = default_interval(T)
              batch_size: int = 256,
              verbose: bool = True,
              ) -> dict:
    """Sample every (method, s) on the same labels and seeds, score with the judge; a JSON-ready dict."""
    K = model.cfg.num_classes
    device = next(model.parameters()).device
    labels = class_rows(K, n_per_class, device)                                 # (N,) one row per class
    negatives = next_class(labels, K)                                           # row c avoids c + 1
    seeds = list(range(seed, seed + len(labels)))
    interval = interval or default_interval(schedule.T)
    np_labels, np_negs = labels.cpu().numpy(), negatives.cpu().numpy()[:, None]
    methods = {
        "cfg": dict(),
        "negative": dict(negatives=[(negatives, 1.0)]),
        "autoguidance": dict(ref_model=ref_model),
        "interval": dict(interval=interval),
    }
    if ref_model is None:
        del methods["autoguidance"]

    def score(**kw) -> tuple[dict, float]:
        t0 = time.time()
        images = generate(guide(model, labels, **kw), schedule, seeds=seeds, sampler=sampler, steps=steps,
                          batch_size=batch_size)
        seconds = time.time() - t0
        return evaluate(judge, images, np_labels, np_negs, real), seconds

    unguided, unguided_s = score(scale=1.0)
    out = {name: {"scales": list(scales), **{m: [] for m in METRICS}, "seconds": []} for name in methods}
    for name, kw in methods.items():
        for s in scales:
            row, sec = (unguided, unguided_s) if s == 1 else score(scale=s, **kw)
            for m in METRICS:
                out[name][m].append(row[m])
            out[name]["seconds"].append(round(sec, 2))
            if verbose:
                print(f"  {name:<13} s = {s:<4g} accuracy {100 * row['accuracy']:5.1f}%  neg-rate "
                      f"{100 * row['neg_rate']:5.1f}%  diversity {row['diversity']:.2f}  FID {row['fid']:6.2f}"
                      f"  ({sec:.0f} s)", flush=True)
    ref = real_row(real, labels=np_labels)
    return {
        "methods": out,
        "real": {m: ref[m] for m in ("diversity", "fid", "fid_class_mean")},
        "judge_test_accuracy": judge.test_accuracy,
        "settings": dict(n_per_class=n_per_class, classes=K, sampler=sampler, steps=steps or 50, seed=seed,
                         interval=list(interval), negative_rule="row c avoids (c + 1) mod K",
                         convention="eps = eps_ref + s (eps_pos - eps_ref); w = s - 1"),
    }


def run_from_args(args, ckpt_path: str) -> dict:
    """The `sample.py --sweep` front end: load the run, its judge and the early checkpoint; write the figure."""
    device = resolve_device(args.device)
    model, cfg, step = checkpoint.load_model(ckpt_path, device=device, weights=args.weights)
    run_dir = os.path.dirname(ckpt_path) or "."
    ref_path = args.ref_ckpt or os.path.join(run_dir, "ckpt_step500.pt")
    ref_model = None
    if os.path.isfile(ref_path) or args.ref_ckpt:
        ref_model, ref_step = checkpoint.load_reference(ref_path, cfg, device=device, weights=args.weights)
    else:
        print(f"note: {ref_path} does not exist, so the autoguidance line is skipped "
              "(train with --keep-every 500, or pass --ref-ckpt FILE)")
    check_steps(args.steps, cfg.diffusion.timesteps)
    out = writable_dir(args.out or "figures", what="output folder", flag="--out")
    judge = judge_for(run_dir, dataset=cfg.train.dataset, data_dir=cfg.train.data_dir, device=device)
    real = real_reference(judge, dataset=cfg.train.dataset, data_dir=cfg.train.data_dir)
    scales = tuple(args.sweep_scales) if args.sweep_scales else SCALES
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    interval = args.interval or default_interval(schedule.T)
    print(f"sweep: {ckpt_path} (step {step}); {args.sweep_n} per class x {cfg.model.num_classes} classes, "
          f"{args.sampler.upper()}-{args.steps or (50 if args.sampler == 'ddim' else schedule.T)}, seeds "
          f"{args.seed}..; s in {', '.join(f'{s:g}' for s in scales)}; interval t in [{interval[0]}, {interval[1]}]"
          + (f"; autoguidance ref {ref_path} (step {ref_step})" if ref_model is not None else ""))
    t0 = time.time()
    result = run_sweep(model, schedule, judge=judge, real=real, ref_model=ref_model, scales=scales,
                       n_per_class=args.sweep_n, sampler=args.sampler, steps=args.steps, seed=args.seed,
                       interval=interval, batch_size=args.batch_size)
    result["settings"].update(ckpt=ckpt_path, step=step, ref_ckpt=ref_path if ref_model is not None else None,
                              ref_step=ref_step if ref_model is not None else None, device=str(device),
                              wall_seconds=round(time.time() - t0, 1))
    json_path, png_path = os.path.join(out, "sweep.json"), os.path.join(out, "sweep.png")
    with open(json_path + ".tmp", "w") as f:
        json.dump(jsonable(result), f, indent=1)
    os.replace(json_path + ".tmp", json_path)
    from .viz import plot_sweep                       # matplotlib lives in viz.py only
    plot_sweep(png_path, result)
    print(f"wrote {png_path} and {json_path} ({time.time() - t0:.0f} s)")
    return result

