"""`python sample.py --sweep`: the judge's metrics against the guidance scale s, one line per guidance method.

    python sample.py --sweep                       # runs/digits -> figures/sweep.png + figures/sweep.json

Every method samples the same labels (20 per class by default) from the same seeds with one sampler (DDIM-50):
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

import os
import time
from dataclasses import dataclass

import torch

from .files import write_json
from .guidance import Guided, guide
from .judge import Judge
from .metrics import RealReference, evaluate, real_row
from .pipeline import class_rows, generate, next_class
from .sampling import Sampler
from .schedule import NoiseSchedule

SCALES = (0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)
METRICS = ("accuracy", "neg_rate", "tv", "diversity", "fid", "fid_class_mean")   # tv: to the class asked for


def default_interval(T: int) -> tuple[int, int]:
    """The middle of the chain, [0.2 T, 0.8 T] as timestep indices (t = 0 is the least noise)."""
    return round(0.2 * T), round(0.8 * T)


@dataclass
class Plan:
    """Every guided denoiser of a sweep, built (and so checked) before anything is sampled or written."""
    num_classes: int
    n_per_class: int
    labels: torch.Tensor                      # (N,) one row of n_per_class per class
    negatives: torch.Tensor                   # (N,) row c avoids (c + 1) mod K: every line's neg-rate is against it
    seeds: list[int]
    scales: tuple[float, ...]
    interval: tuple[int, int]
    unguided: Guided                          # s = 1, shared by every method
    methods: dict[str, dict[float, Guided]]   # method -> s -> guided denoiser (s = 1 is `unguided`)


def plan(model: torch.nn.Module, schedule: NoiseSchedule, *,
         ref_model: torch.nn.Module | None,      # early checkpoint for autoguidance; None skips that line
         scales: tuple[float, ...] = SCALES,
         n_per_class: int = 20,
         seed: int = 0,
         interval: tuple[int, int] | None = None,  # None = default_interval(T)
         ) -> Plan:
    """Build the sweep: the same labels and seeds for every (method, s)."""
    K = model.cfg.num_classes
    labels = class_rows(K, n_per_class, next(model.parameters()).device)
    negatives = next_class(labels, K)
    interval = interval or default_interval(schedule.T)
    kinds = {"cfg": dict(), "negative": dict(negatives=[(negatives, 1.0)]),
             "autoguidance": dict(ref_model=ref_model), "interval": dict(interval=interval)}
    if ref_model is None:
        del kinds["autoguidance"]
    unguided = guide(model, labels, scale=1.0)
    methods = {name: {s: unguided if s == 1 else guide(model, labels, scale=s, **kw) for s in scales}
               for name, kw in kinds.items()}
    return Plan(K, n_per_class, labels, negatives, list(range(seed, seed + len(labels))), tuple(scales), interval, unguided, methods)


def run(plan: Plan, schedule: NoiseSchedule, sampler: Sampler, *,
        judge: Judge,
        real: RealReference,
        verbose: bool = True,
        ) -> dict:
    """Sample every (method, s) of `plan`, score with the judge; a JSON-ready dict."""
    sampler = sampler.resolve(schedule.T)
    np_labels, np_negs = plan.labels.cpu().numpy(), plan.negatives.cpu().numpy()[:, None]
    scored: dict[int, tuple[dict, float]] = {}          # id(guided) -> (metrics, seconds): s = 1 is sampled once

    def score(guided: Guided) -> tuple[dict, float]:
        if id(guided) not in scored:
            t0 = time.time()
            images = generate(guided, schedule, sampler, seeds=plan.seeds)
            scored[id(guided)] = evaluate(judge, images, np_labels, np_negs, real), time.time() - t0
        return scored[id(guided)]

    score(plan.unguided)
    out = {name: {"scales": list(plan.scales), **{m: [] for m in METRICS}, "seconds": []} for name in plan.methods}
    for name, by_scale in plan.methods.items():
        for s, guided in by_scale.items():
            row, sec = score(guided)
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
        "settings": dict(n_per_class=plan.n_per_class, classes=plan.num_classes, sampler=sampler.label, sample_steps=sampler.sample_steps, eta=sampler.eta,
                         seed=plan.seeds[0], interval=list(plan.interval),
                         negative_rule="row c avoids (c + 1) mod K",
                         convention="eps = eps_ref + s (eps_pos - eps_ref); w = s - 1"),
    }


def save(result: dict, out: str) -> tuple[str, str]:
    """sweep.png and sweep.json into the folder `out`; returns their paths."""
    from .viz import plot_sweep                       # matplotlib lives in viz.py only

    png_path, json_path = os.path.join(out, "sweep.png"), os.path.join(out, "sweep.json")
    write_json(json_path, result)
    plot_sweep(png_path, result)
    return png_path, json_path
