"""Benchmarks: ratios measured side by side in one process, plus absolute numbers labelled with the device.

    python -m benchmarks.bench                      # train, guided-step, samplers, memory (the cheap ones)
    python -m benchmarks.bench train guided-step    # named cases
    nice python -m benchmarks.bench time-to-quality # trains the digits preset from scratch: run it alone
    python -m benchmarks.bench train --dataset mnist --data-dir ~/data --device cuda

Run from the repository root (benchmarks/ imports toydiff; toydiff never imports benchmarks/).

Cases:
    train            images/s of toydiff's training loop and of its UNet in a plain loop, against a plain
                     reference (a ContextUnet-style net in the manner of TeaPearce's Conditional_Diffusion_MNIST,
                     written here, sized to about the same parameter count); same data, same batch
    guided-step      one guided step (pos + one negative in ONE batched forward) vs an unguided step vs the same
                     two branches as two separate forwards
    samplers         DDIM-50, DDIM-20, DPM-Solver++(2M) at 20 and 10 calls, at s = 1 and CFG s = 3: judge accuracy,
                     classifier-FID and seconds per image, same checkpoint and seeds; DDPM-1000 (s = 3) for its time
    time-to-quality  train the dataset preset from scratch (keep_every 250) into a temp folder (or, --existing, take
                     --run's kept checkpoints), then score each kept checkpoint: judge accuracy at s = 1 and CFG
                     s = 3, classifier-FID at s = 1 and the unconditional class mix's TV to the training prior
                     (DDIM-50 at the preset's eta); the first step >= 97% at s = 3 and the training seconds
                     stored in that checkpoint (evaluation not counted); --set tries a candidate
    removal          "anything but k" for every class k (--n per class, so N = n K samples per k; DDIM-50, --eta):
                     static s = 3, posterior-aware (--lam, ceiling --ceiling, --tracker) and the exact baseline
                     (labels in quotas of the training prior without k, s = 1): forbidden rate, TV to the model's own
                     p(x | not k) (the unguided unconditional histogram on the same seeds, k dropped) and to the
                     training prior without k; plus ms per guided step: static, two-branch and all-class trackers
    busy             seconds per training step (generated data) on a quiet machine and beside one busy process:
                     torch's default threads, one thread, and what train.py --threads auto picks; run it alone
    peers            toydiff's preset UNet, diffusers' UNet2DModel and the ContextUnet layout, each sized to the
                     preset's parameter count, trained by one loop (toydiff's recipe, the same batches and noise) for
                     --budget seconds each, in turns; then scored as time-to-quality scores a checkpoint
                     (benchmarks/peers.py; diffusers from the optional extra: pip install -e ".[peers]")
    memory           peak RSS (resource.getrusage) after training steps and after sampling; CUDA max allocated

These are measurements, not tests: nothing here asserts a time. Run the heavy cases once, on a quiet machine.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from toydiff import checkpoint
from toydiff.cli import ArgumentParser, int_list, positive_float, positive_int, run_cli
from toydiff.config import check_config, preset
from toydiff.data import DATASETS, class_prior, load_dataset
from toydiff.errors import UserError
from toydiff.files import check_creatable, write_json
from toydiff.guidance import TRACKERS, guide
from toydiff.judge import judge_for, predict
from toydiff.metrics import evaluate, real_reference, real_row, target_histogram, total_variation
from toydiff.pipeline import class_rows, generate, next_class, quota_labels
from toydiff.runtime import cpu_model, resolve_device
from toydiff.sampling import Sampler
from toydiff.schedule import NoiseSchedule
from toydiff.training import diffusion_loss, fastest_cpu_threads, train
from toydiff.unet import UNet

from .peers import train_side_by_side
from .reference_unet import matched_reference, n_params

CASES = ("train", "guided-step", "samplers", "time-to-quality", "removal", "busy", "memory", "peers")
DEFAULT_CASES = ("train", "guided-step", "samplers", "memory")


# ---------------------------------------------------------------- where it ran

def device_label(device: torch.device) -> str:
    """'NVIDIA H100 80GB HBM3' or 'AMD EPYC 7B13, 2 cores (2 torch threads)'."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    model = cpu_model()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores ({torch.get_num_threads()} torch threads, torch {torch.__version__})"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall seconds of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---------------------------------------------------------------- cases

def case_train(ctx: "Context") -> dict:
    cfg = ctx.cfg
    steps, warm = ctx.args.train_steps, 5
    images, labels = ctx.train_data.tensors
    B = cfg.train.batch_size
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    toy = UNet(cfg.model)
    ref = matched_reference(n_params(toy), cfg.model.in_channels, cfg.model.image_size, cfg.model.num_classes,
                            cfg.diffusion.timesteps)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, len(images), (B,), generator=g) for _ in range(steps + warm)]

    def plain_loop(model: nn.Module) -> float:
        """Adam, the same loss (label dropout 0.1), the same batches; images/s after `warm` steps."""
        model = model.to(ctx.device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        gen = torch.Generator(device=ctx.device).manual_seed(0)
        t0 = 0.0
        for i, idx in enumerate(batches):
            if i == warm:
                sync(ctx.device)
                t0 = time.perf_counter()
            x0, y = images[idx].to(ctx.device), labels[idx].to(ctx.device)
            loss = diffusion_loss(model, schedule, x0, y, p_uncond=0.1, null=cfg.model.num_classes, generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(ctx.device)
        return steps * B / (time.perf_counter() - t0)

    ref_ips = plain_loop(ref)
    toy_ips = plain_loop(toy)
    with tempfile.TemporaryDirectory() as tmp:           # the real loop: EMA, clipping, LR schedule, checkpoints
        full = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps, ckpt_every=10 ** 9,
                                                                  keep_every=0, log_every=10 ** 9, warmup=1))
        train(full, tmp, data=ctx.train_data, device=ctx.device, progress=False)
        seconds = float(checkpoint.load(tmp)["seconds"])
    loop_ips = steps * B / seconds
    return dict(batch=B, steps=steps, toydiff_params=n_params(toy), reference_params=n_params(ref),
                reference_n_feat=ref.up0[0].in_channels // 2, reference_images_per_s=ref_ips,
                toydiff_unet_images_per_s=toy_ips, toydiff_train_loop_images_per_s=loop_ips,
                ratio_unet_vs_reference=toy_ips / ref_ips, ratio_train_loop_vs_reference=loop_ips / ref_ips,
                note="toydiff's train() includes EMA, grad clipping, LR schedule, one final checkpoint write")


def case_guided_step(ctx: "Context") -> dict:
    model, _ = ctx.model(trained=False)
    K, n = ctx.cfg.model.num_classes, ctx.args.n * ctx.cfg.model.num_classes
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, ctx.cfg.model.in_channels, ctx.cfg.model.image_size, ctx.cfg.model.image_size,
                    generator=g).to(ctx.device)
    t = torch.full((n,), ctx.cfg.diffusion.timesteps // 2, device=ctx.device)
    pos = class_rows(K, ctx.args.n, ctx.device)
    neg = next_class(pos, K)
    batched = guide(model, pos, scale=3.0, negatives=[(neg, 1.0)])
    unguided = guide(model, pos, scale=1.0)

    def separate():
        e_pos, e_neg = model(x, t, pos), model(x, t, neg)            # the same two branches, two forwards
        return e_neg + 3.0 * (e_pos - e_neg)

    with torch.no_grad():
        assert torch.allclose(batched(x, t), separate(), atol=1e-4), "batched and separate guidance differ"
        r = ctx.args.repeats
        tb, tu, ts = (timed(lambda f=f: f(x, t) if f is not separate else f(), ctx.device, repeats=r)
                      for f in (batched, unguided, separate))
    return dict(batch=n, batched_guided_ms=1e3 * tb, unguided_ms=1e3 * tu, two_separate_forwards_ms=1e3 * ts,
                ratio_batched_vs_unguided=tb / tu, ratio_batched_vs_separate=tb / ts,
                batched_no_costlier_than_separate=bool(tb <= ts * 1.05))


SAMPLER_CASES = (("ddim50", Sampler("ddim", 50)), ("ddim20", Sampler("ddim", 20)),
                 ("dpm20", Sampler("dpm++2m", 20)), ("dpm10", Sampler("dpm++2m", 10)))


def case_samplers(ctx: "Context") -> dict:
    """Each sampler of SAMPLER_CASES at s = 1 and CFG s = 3 on the same labels and seeds: judge accuracy and
    classifier-FID against the real test split, seconds per image; DDPM-1000 at s = 3 for its time."""
    model, step = ctx.model(trained=True)
    judge = ctx.judge()
    real = real_reference(judge, dataset=ctx.args.dataset, data_dir=ctx.args.data_dir)
    labels = class_rows(ctx.cfg.model.num_classes, ctx.args.n, ctx.device)
    seeds = list(range(len(labels)))
    schedule = NoiseSchedule.from_config(ctx.cfg.diffusion)
    out = dict(checkpoint_step=step, n=len(labels))
    for name, sampler in SAMPLER_CASES:
        for s in (1.0, 3.0):
            sync(ctx.device)
            t0 = time.perf_counter()
            images = generate(guide(model, labels, scale=s), schedule, sampler, seeds=seeds)
            sync(ctx.device)
            out[f"{name}_s{s:g}_seconds_per_image"] = (time.perf_counter() - t0) / len(labels)
            m = evaluate(judge, images, labels.cpu().numpy(), None, real)
            out[f"{name}_s{s:g}_accuracy"], out[f"{name}_s{s:g}_fid"] = m["accuracy"], m["fid"]
    few = labels[:20]                                    # DDPM-1000 is timed only: 50x the calls of DDIM-20
    t0 = time.perf_counter()
    generate(guide(model, few, scale=3.0), schedule, Sampler("ddpm", schedule.T), seeds=seeds[:len(few)])
    sync(ctx.device)
    out["ddpm1000_s3_seconds_per_image"] = (time.perf_counter() - t0) / len(few)
    out["ratio_ddpm_vs_ddim_time"] = out["ddpm1000_s3_seconds_per_image"] / out["ddim50_s3_seconds_per_image"]
    out["ratio_dpm20_vs_ddim50_time"] = out["dpm20_s3_seconds_per_image"] / out["ddim50_s3_seconds_per_image"]
    return out


class Scorer:
    """Judge accuracy at s = 1 and CFG s = 3, classifier-FID at s = 1 (against the real test split, at this N) and
    the unconditional samples' class mix (TV to the training prior): the same labels, seeds and sampler (DDIM-50 at
    the preset's eta, as sample.py's default) for every model scored."""

    def __init__(self, ctx: "Context"):
        self.judge = ctx.judge()
        self.real = real_reference(self.judge, dataset=ctx.args.dataset, data_dir=ctx.args.data_dir)
        self.K = K = ctx.cfg.model.num_classes
        self.labels = class_rows(K, ctx.args.n, ctx.device)
        self.np_labels, self.seeds = self.labels.cpu().numpy(), list(range(len(self.labels)))
        self.null = torch.full_like(self.labels, K)                 # the same number of unconditional samples
        self.prior = class_prior(ctx.train_data.tensors[1], K).numpy()
        self.schedule = NoiseSchedule.from_config(ctx.cfg.diffusion)
        self.sampler = Sampler("ddim", 50, eta=ctx.cfg.diffusion.eta)

    def __call__(self, model: nn.Module) -> dict:
        row = {}
        for s in (1.0, 3.0):
            images = generate(guide(model, self.labels, scale=s), self.schedule, self.sampler, seeds=self.seeds)
            m = evaluate(self.judge, images, self.np_labels, None, self.real)
            row[f"accuracy_s{s:g}"], row[f"fid_s{s:g}"] = m["accuracy"], m["fid"]
        images = generate(guide(model, self.null, scale=1.0), self.schedule, self.sampler, seeds=self.seeds)
        judged = np.bincount(predict(self.judge, images).numpy(), minlength=self.K) / len(self.labels)
        row["uncond_tv"] = total_variation(judged, self.prior)       # the null branch's class mix against the data's
        return row

    def floor(self) -> float:
        """Classifier-FID of real test images against the real reference at the same N."""
        return real_row(self.real, labels=self.np_labels)["fid"]


def quality_line(row: dict) -> str:
    return (f"accuracy s=1 {row['accuracy_s1']:.1%}, s=3 {row['accuracy_s3']:.1%}; FID s=1 {row['fid_s1']:.2f}; "
            f"unconditional TV {row['uncond_tv']:.3f}")


def case_time_to_quality(ctx: "Context") -> dict:
    """`Scorer`'s row for every kept checkpoint: of a fresh run of the preset, or with --existing of --run's own
    kept checkpoints."""
    score_model = Scorer(ctx)
    rows, first = [], None

    def score(folder: str) -> None:
        nonlocal first
        for step, path in checkpoint.kept_checkpoints(folder):
            run = checkpoint.load_run(path, device=ctx.device)                 # one read: model and seconds
            row = dict(step=step, train_seconds=round(float(run.ckpt["seconds"]), 1), **score_model(run.model))
            rows.append(row)
            print(f"    step {step:>5}: {row['train_seconds']:7.1f} s of training; {quality_line(row)}", flush=True)
            if first is None and row["accuracy_s3"] >= ctx.args.target:
                first = row

    if ctx.args.existing:
        score(ctx.run_dir)
    else:
        cfg = dataclasses.replace(ctx.cfg, train=dataclasses.replace(ctx.cfg.train, keep_every=ctx.args.keep_every))
        with tempfile.TemporaryDirectory() as tmp:
            print(f"  training the {cfg.train.dataset} preset from scratch ({cfg.train.steps} steps, keep_every "
                  f"{cfg.train.keep_every}) in {tmp}", flush=True)
            train(cfg, tmp, data=ctx.train_data, device=ctx.device, progress=False)
            score(tmp)
    return dict(target=ctx.args.target, n=len(score_model.labels), sampler=score_model.sampler.label,
                checkpoints=rows, fid_real_floor=score_model.floor(),
                first_step_reaching_target=first["step"] if first else None,
                train_seconds_to_target=first["train_seconds"] if first else None)


def case_peers(ctx: "Context") -> dict:
    """toydiff's preset UNet, diffusers' UNet2DModel and the ContextUnet layout, one loop, the same --budget
    seconds each, in turns (benchmarks/peers.py); then `Scorer`'s row for each EMA net."""
    ctx.train_data                                               # noqa: B018 - fixes the model shape from the data
    trainees = train_side_by_side(ctx.cfg, ctx.train_data, ctx.args.budget, ctx.device, sync)
    score_model, rows = Scorer(ctx), []
    for tr in trainees:
        row = dict(net=tr.name, params=n_params(tr.model), steps=tr.done, train_seconds=round(tr.seconds, 1),
                   seconds_per_step=round(tr.seconds / tr.done, 4), **score_model(tr.ema.module.eval()))
        rows.append(row)
        print(f"    {tr.name:<12} {row['steps']:>5} steps in {row['train_seconds']:7.1f} s; {quality_line(row)}",
              flush=True)
    missing = [] if any(r["net"] == "diffusers" for r in rows) else ["diffusers (pip install -e \".[peers]\")"]
    return dict(budget_seconds=ctx.args.budget, n=len(score_model.labels), sampler=score_model.sampler.label,
                checkpoints=rows, fid_real_floor=score_model.floor(), skipped=missing)


def removal_sets(ctx: "Context", k: int) -> dict:
    """The guided denoisers of `removal` for class k (building them checks --classes, --lam, --ceiling)."""
    model, _ = ctx.model(trained=True)
    K, (ceiling, tracker, lam) = ctx.cfg.model.num_classes, (ctx.args.ceiling, ctx.args.tracker, ctx.args.lam)
    nulls = torch.full((ctx.args.n * K,), K, device=ctx.device)
    prior = class_prior(ctx.train_data.tensors[1], K)
    return {"static s=3": guide(model, nulls, scale=3.0, negatives=[(k, 1.0)]),
            f"posterior (lambda {lam:g}, ceiling {ceiling:g}, {tracker})":
                guide(model, nulls, scale=ceiling, negatives=[(k, 1.0)], dynamic=lam, tracker=tracker),
            "exact baseline": guide(model, quota_labels(prior, len(nulls), removed=[k]).to(ctx.device), scale=1.0)}


def removal_classes(ctx: "Context") -> list[int]:
    return list(ctx.args.classes) if ctx.args.classes is not None else list(range(ctx.cfg.model.num_classes))


def case_removal(ctx: "Context") -> dict:
    model, step = ctx.model(trained=True)
    judge, K = ctx.judge(), ctx.cfg.model.num_classes
    N, ceiling = ctx.args.n * K, ctx.args.ceiling
    schedule, sampler = NoiseSchedule.from_config(ctx.cfg.diffusion), Sampler("ddim", 50, eta=ctx.args.eta)
    prior = class_prior(ctx.train_data.tensors[1], K)
    nulls, seeds = torch.full((N,), K, device=ctx.device), list(range(N))

    def histogram(images: torch.Tensor) -> torch.Tensor:
        return torch.bincount(predict(judge, images), minlength=K).double() / len(images)

    def tv_without(h: torch.Tensor, reference: torch.Tensor, k: int) -> float:
        """TV of h against `reference` with class k dropped and renormalised."""
        return round(total_variation(h, target_histogram([-1], [[k]], reference.numpy())), 4)

    unguided = histogram(generate(guide(model, nulls, scale=1.0), schedule, sampler, seeds=seeds))
    rows = []
    classes = removal_classes(ctx)
    for k in classes:
        for name, g in removal_sets(ctx, k).items():
            h = histogram(generate(g, schedule, sampler, seeds=seeds))
            rows.append(dict(k=k, set=name, forbidden=round(float(h[k]), 4), tv_model=tv_without(h, unguided, k),
                             tv_prior=tv_without(h, prior, k)))
            print(f"    k = {k}  {name:<42} forbidden {h[k]:6.1%}  TV to the model's p(x | not k) "
                  f"{rows[-1]['tv_model']:.3f}  TV to the prior {rows[-1]['tv_prior']:.3f}", flush=True)

    x = torch.randn(N, *ctx.train_data.tensors[0].shape[1:], generator=torch.Generator().manual_seed(0)).to(ctx.device)
    t = torch.full((N,), schedule.T // 2, device=ctx.device)
    cost = {}
    with torch.no_grad():
        for name, tr in (("static", None), ("two", "two"), ("all", "all")):
            g = guide(model, nulls, scale=ceiling, negatives=[(0, 1.0)], dynamic=None if tr is None else 1.0,
                      tracker=tr or "two")
            chain = g.chain(schedule.alpha_bar)
            chain(x, t)                                  # primes the tracker: later calls include its update
            cost[name] = 1e3 * timed(lambda: chain(x, t), ctx.device, repeats=ctx.args.repeats)
    means = {name: round(sum(r["forbidden"] for r in rows if r["set"] == name) / len(classes), 4)
             for name in dict.fromkeys(r["set"] for r in rows)}
    return dict(checkpoint_step=step, n_per_k=N, sampler=sampler.label, unguided=unguided.round(decimals=4).tolist(),
                rows=rows, mean_forbidden=means, guided_step_ms=cost, ratio_two_vs_static=cost["two"] / cost["static"],
                ratio_all_vs_static=cost["all"] / cost["static"])


def case_busy(ctx: "Context") -> dict:
    """Seconds per training step of the preset (train(), on generated data: speed only), on a quiet machine and
    beside one busy process (a Python loop spinning on a core, as a laptop's other work does): at torch's default
    thread count, at one thread, and at what `train.py --threads auto` picks (`fastest_cpu_threads`)."""
    if ctx.device.type != "cpu":
        raise UserError("the busy case measures CPU threads; run it with --device cpu")
    cfg = dataclasses.replace(ctx.cfg, train=dataclasses.replace(ctx.cfg.train, steps=ctx.args.train_steps,
                                                                 ckpt_every=10 ** 9, keep_every=0,
                                                                 log_every=10 ** 9, warmup=1))
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand((4 * cfg.train.batch_size, *cfg.model.data_shape), generator=g) * 2 - 1,
                         torch.randint(0, cfg.model.num_classes, (4 * cfg.train.batch_size,), generator=g))
    default = torch.get_num_threads()

    def per_step(n: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            train(cfg, tmp, data=data, device=ctx.device, progress=False, num_threads=n)
            return float(checkpoint.load(tmp)["seconds"]) / cfg.train.steps

    out = dict(steps=cfg.train.steps, batch=cfg.train.batch_size, default_threads=default)
    for load in ("quiet", "busy"):
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load == "busy" else None
        try:
            t0 = time.perf_counter()
            auto, _ = fastest_cpu_threads(cfg, data)
            out[f"{load}_auto_threads"], out[f"{load}_auto_probe_seconds"] = auto, time.perf_counter() - t0
            for name, n in (("default", default), ("one_thread", 1), ("auto", auto)):
                out[f"{load}_{name}_seconds_per_step"] = per_step(n)
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    for name in ("default", "auto"):
        busy, quiet = out[f"busy_{name}_seconds_per_step"], out[f"quiet_{name}_seconds_per_step"]
        out[f"ratio_{name}_busy_vs_quiet"] = busy / quiet
    out["ratio_busy_auto_vs_default"] = out["busy_auto_seconds_per_step"] / out["busy_default_seconds_per_step"]
    return out


def case_memory(ctx: "Context") -> dict:
    def rss_mb() -> float:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss          # KiB on Linux, bytes on macOS
        return kb / 1024 ** (2 if sys.platform == "darwin" else 1)

    def cuda_mb() -> float | None:
        return torch.cuda.max_memory_allocated(ctx.device) / 2 ** 20 if ctx.device.type == "cuda" else None

    out = dict(peak_rss_mb_at_start=rss_mb())
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    with tempfile.TemporaryDirectory() as tmp:
        short = dataclasses.replace(ctx.cfg, train=dataclasses.replace(ctx.cfg.train, steps=ctx.args.train_steps,
                                                                       ckpt_every=10 ** 9, keep_every=0))
        model = train(short, tmp, data=ctx.train_data, device=ctx.device, progress=False)
    out.update(peak_rss_mb_after_training=rss_mb(), cuda_max_allocated_mb_training=cuda_mb(),
               train_batch=ctx.cfg.train.batch_size)
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    K = ctx.cfg.model.num_classes
    labels = class_rows(K, ctx.args.n, ctx.device)
    generate(guide(model.eval(), labels, scale=3.0, negatives=[(next_class(labels, K), 1.0)]),
             NoiseSchedule.from_config(ctx.cfg.diffusion), Sampler("ddim", 10), seeds=list(range(len(labels))))
    out.update(peak_rss_mb_after_sampling=rss_mb(), cuda_max_allocated_mb_sampling=cuda_mb(),
               sample_batch=len(labels))
    return out


def check(ctx: "Context", cases: list[str]) -> None:
    """Every input of the cases asked for, checked before the first one runs: a refusal costs no time and
    writes nothing (neither the judge cached in --run nor --json). The checks are the library's own: the guided
    sets and the sampler a case will use are built here once."""
    args = ctx.args
    if args.json:
        check_creatable(args.json, what="--json")
    fixed = [c for c in cases if c in ("samplers", "removal")]
    if args.set and fixed:
        raise UserError(f"--set changes the preset, but {' and '.join(fixed)} use a trained run's own config; "
                        "drop --set, or run only the cases that train (train, busy, memory, time-to-quality)")
    if set(cases) & {"samplers", "removal"}:
        ctx.model(trained=True)                             # refuses a missing checkpoint
    if "removal" in cases:
        Sampler("ddim", 50, eta=args.eta)
        for k in removal_classes(ctx):
            removal_sets(ctx, k)
    if "time-to-quality" in cases and not 0 < args.target <= 1:     # NaN fails too
        raise UserError(f"--target is a judge accuracy in (0, 1], got {args.target}")


RUNNERS = {"train": case_train, "guided-step": case_guided_step, "samplers": case_samplers,
           "time-to-quality": case_time_to_quality, "removal": case_removal, "busy": case_busy,
           "memory": case_memory, "peers": case_peers}


# ---------------------------------------------------------------- shared state and the front end

def with_overrides(cfg, pairs: list[str]):
    """The preset with `section.field=value` overrides (a candidate for time-to-quality: train.min_snr_gamma=5),
    each value parsed as the field's type and the result checked as train.py checks its flags."""
    for pair in pairs:
        key, sep, text = pair.partition("=")
        section, _, name = key.partition(".")
        part = getattr(cfg, section, None) if section in ("model", "diffusion", "train") else None
        if not sep or part is None or name not in {f.name for f in dataclasses.fields(part)}:
            raise UserError(f"--set {pair!r}: expected section.field=value, e.g. train.steps=650")
        old = getattr(part, name)
        try:
            value = (tuple(int(v) for v in text.split(",")) if isinstance(old, tuple) else
                     text.lower() in ("1", "true") if isinstance(old, bool) else type(old)(text))
        except ValueError:
            raise UserError(f"--set {pair!r}: {text!r} is not a valid {type(old).__name__}") from None
        setattr(cfg, section, dataclasses.replace(part, **{name: value}))
    check_config(cfg)
    return cfg


class Context:
    """Lazily loaded config, data, checkpoint and judge shared by the cases of one invocation."""

    def __init__(self, args, device: torch.device):
        self.args, self.device = args, device
        self.cfg = with_overrides(preset(args.dataset), args.set or [])
        self.cfg.train.data_dir = args.data_dir
        self._train_data = self._model = self._judge = None
        self.run_dir = args.run or os.path.join("runs", args.dataset)

    @property
    def train_data(self):
        if self._train_data is None:
            data, info = load_dataset(self.args.dataset, self.args.data_dir, train=True)
            self.cfg.model = dataclasses.replace(self.cfg.model, in_channels=info.shape[0],
                                                 image_size=info.shape[1], num_classes=info.num_classes)
            self._train_data = data
        return self._train_data

    def model(self, *, trained: bool) -> tuple[nn.Module, int | None]:
        """The run's EMA model if it exists (its config then wins); else, unless `trained`, a fresh preset UNet."""
        path, _ = checkpoint.locate(self.run_dir)
        if os.path.isfile(path):
            if self._model is None:
                run = checkpoint.load_run(path, device=self.device)
                self.cfg = dataclasses.replace(run.cfg, train=dataclasses.replace(run.cfg.train,
                                                                                  data_dir=self.args.data_dir))
                self._model = (run.model, run.step)
            return self._model
        if trained:
            raise UserError(f"this case needs a trained checkpoint: {path} does not exist; train one with "
                            f"`python train.py --dataset {self.args.dataset}` or pass --run DIR")
        self.train_data                                      # noqa: B018 - fixes the model shape from the data
        return UNet(self.cfg.model).to(self.device).eval().requires_grad_(False), None

    def judge(self):
        if self._judge is None:
            cache = self.run_dir if os.path.isdir(self.run_dir) else None
            self._judge = judge_for(cache, dataset=self.args.dataset, data_dir=self.args.data_dir, device=self.device)
        return self._judge


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("cases", nargs="*", default=[], metavar="case",
                   help=f"any of {', '.join(CASES)} (default: {' '.join(DEFAULT_CASES)})")
    p.add_argument("--device", default="auto")
    p.add_argument("--dataset", default="digits", choices=DATASETS)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--run", default=None, help="trained run for guided-step / samplers (default runs/<dataset>)")
    p.add_argument("--n", type=positive_int, default=10, help="samples per class (default 10)")
    p.add_argument("--train-steps", type=positive_int, default=30, help="timed steps per model in `train` (default 30)")
    p.add_argument("--repeats", type=positive_int, default=7, help="timed repeats in guided-step (median)")
    p.add_argument("--keep-every", type=positive_int, default=250, help="time-to-quality: checkpoint spacing")
    p.add_argument("--budget", type=positive_float, default=60.0,
                   help="peers: training seconds per net (default 60)")
    p.add_argument("--target", type=float, default=0.97, help="time-to-quality: judge accuracy to reach")
    p.add_argument("--existing", action="store_true",
                   help="time-to-quality: score the kept checkpoints of --run instead of training a fresh run")
    p.add_argument("--ceiling", type=float, default=20.0, help="removal: the posterior-aware scale's ceiling s")
    p.add_argument("--tracker", choices=TRACKERS, default="two", help="removal: the posterior tracker")
    p.add_argument("--classes", type=int_list, default=None, help="removal: the classes k (default all)")
    p.add_argument("--lam", type=float, default=1.0, help="removal: posterior-aware lambda (1 = exact)")
    p.add_argument("--eta", type=float, default=0.0, help="removal: DDIM eta")
    p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                   help="override the preset for the cases that train (train, busy, memory, time-to-quality; "
                        "refused with samplers and removal), repeatable, "
                        "e.g. --set train.steps=650 --set train.min_snr_gamma=5")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    return p


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return f"[{len(v)} rows]"
    return str(v)


def main(argv: list[str] | None = None) -> None:
    run_cli(lambda: _main(argv))


def _main(argv: list[str] | None) -> None:
    args = build_parser().parse_args(argv)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        raise UserError(f"unknown case {', '.join(unknown)}; choose from {', '.join(CASES)}")
    device = resolve_device(args.device)
    cases = list(dict.fromkeys(args.cases)) or list(DEFAULT_CASES)
    ctx = Context(args, device)
    check(ctx, cases)
    label = device_label(device)
    print(f"toydiff bench on {label}; dataset {args.dataset}")
    results = {"device": label, "dataset": args.dataset, "cases": {}}
    for name in cases:
        print(f"[{name}]", flush=True)
        t0 = time.time()
        r = RUNNERS[name](ctx)
        r["wall_seconds"] = round(time.time() - t0, 1)
        results["cases"][name] = r
        for k, v in r.items():
            if k != "checkpoints":
                print(f"  {k:<40} {_fmt(v)}")
    if args.json:
        write_json(args.json, results)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
