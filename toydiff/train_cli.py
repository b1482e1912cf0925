"""`python train.py` / `toydiff-train`: train a class-conditional diffusion model with label dropout.

    python train.py                                   # digits, CPU minutes, into runs/digits/
    python train.py --dataset mnist --data-dir DIR    # torchvision MNIST (add --download when online)
    python train.py --resume                          # continue runs/digits/ from its last checkpoint
    torchrun --nproc_per_node 2 train.py ...          # DistributedDataParallel
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import torch

from . import checkpoint
from .cli import ArgumentParser, int_list, path, run_cli, thread_count
from .config import ConfigError, check_config, check_model_config, fit_to_data, preset
from .data import DATASETS, load_dataset
from .errors import UserError
from .files import output_dir
from .guidance import check_scale, guide
from .pipeline import class_rows, generate, save_grid
from .runtime import init_distributed, resolve_device, threads
from .sampling import Sampler
from .schedule import NoiseSchedule
from .training import TrainingInterrupted, check_resume, check_setup, fastest_cpu_threads, train
from .models import build_model, cpu_threads

# flag -> (config section, field). Flags left at None keep the dataset preset (or the resumed run's value).
CONFIG_FLAGS = {
    "width": ("model", "width"), "channel_mult": ("model", "channel_mult"),
    "num_res_blocks": ("model", "num_res_blocks"), "attention": ("model", "attention"),
    "dropout": ("model", "dropout"), "patch": ("model", "patch"), "timesteps": ("diffusion", "timesteps"),
    "schedule": ("diffusion", "schedule"), "steps": ("train", "steps"), "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"), "warmup": ("train", "warmup"), "p_uncond": ("train", "p_uncond"),
    "min_snr_gamma": ("train", "min_snr_gamma"),
    "ema_decay": ("train", "ema_decay"), "grad_clip": ("train", "grad_clip"), "amp": ("train", "amp"),
    "seed": ("train", "seed"), "ckpt_every": ("train", "ckpt_every"), "keep_every": ("train", "keep_every"),
    "log_every": ("train", "log_every"),
}
RESUMABLE = {"steps", "log_every", "ckpt_every", "keep_every"}    # may change when resuming
GRID_PER_CLASS = 10                                               # the final grid: one row of 10 per class
POINTS_PER_CLASS = 200                                            # the final scatter of a 2D run


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="train.py", description="Train a class-conditional diffusion model (toydiff).")
    p.add_argument("--dataset", default=None, choices=DATASETS,
                   help="default: digits (embedded, no download), or the resumed run's")
    p.add_argument("--data-dir", type=path, default=None, help="torchvision data folder (default ./data)")
    p.add_argument("--download", action="store_true", help="download the dataset into --data-dir")
    p.add_argument("--run", "--run-dir", dest="run", type=path, default=None,
                   help="run folder (default runs/<dataset>); under torchrun spell it --run-dir")
    p.add_argument("--resume", action="store_true", help="continue the run in --run from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --run")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("--threads", type=thread_count, default="auto",
                   help="torch threads on the CPU: N, or auto (default): the count a resumed run started with, "
                        "else OMP_NUM_THREADS if set, else the fastest of a few timed steps (one thread beside a "
                        "busy process, one per core on a quiet machine)")
    m = p.add_argument_group("model (default: the dataset preset)")
    m.add_argument("--width", type=int)
    m.add_argument("--channel-mult", type=int_list, help="e.g. 1,2,2")
    m.add_argument("--num-res-blocks", type=int)
    m.add_argument("--no-attention", dest="attention", action="store_const", const=False, default=None)
    m.add_argument("--dropout", type=float)
    m.add_argument("--patch", type=int, help="pixel-unshuffle stem: run the UNet on (C p^2, H/p, W/p); 1 = off")
    d = p.add_argument_group("diffusion")
    d.add_argument("--timesteps", type=int, help="T (default 1000)")
    d.add_argument("--schedule", choices=("cosine", "linear"))
    t = p.add_argument_group("training")
    t.add_argument("--steps", type=int, help="training steps (optimizer updates)")
    t.add_argument("--batch-size", type=int, help="global batch, split across torchrun processes")
    t.add_argument("--lr", type=float)
    t.add_argument("--warmup", type=int)
    t.add_argument("--p-uncond", type=float, help="label dropout probability (default 0.1)")
    t.add_argument("--min-snr-gamma", type=float, help="loss weight min(SNR_t, gamma) / SNR_t; 0 = plain MSE (default)")
    t.add_argument("--ema-decay", type=float)
    t.add_argument("--grad-clip", type=float)
    t.add_argument("--amp", choices=("none", "bf16", "fp16"), help="autocast dtype (CUDA)")
    t.add_argument("--seed", type=int)
    t.add_argument("--ckpt-every", type=int)
    t.add_argument("--keep-every", type=int, help="also keep ckpt_step{N}.pt every N steps (autoguidance)")
    t.add_argument("--log-every", type=int)
    p.add_argument("--grid-scale", type=float, default=3.0,
                   help="CFG scale s of the final sample grid (DDIM, 50 sampling steps or T if fewer)")
    return p


def main(argv: list[str] | None = None) -> None:
    run_cli(lambda: _main(argv))


def _main(argv: list[str] | None) -> None:
    """parse -> build and check everything (config, data, model shape, the final grid) -> only then write."""
    args = build_parser().parse_args(argv)
    given = {k for k in CONFIG_FLAGS if getattr(args, k) is not None}
    run_dir = args.run or os.path.join("runs", args.dataset or "digits")
    resume_from = checkpoint.check_run_dir(run_dir, resume=args.resume, overwrite=args.overwrite)
    resumed = checkpoint.load(resume_from) if resume_from else None          # the one read of the checkpoint
    cfg = checkpoint.config_of(resumed) if resumed else preset(args.dataset or "digits")
    if resumed:
        _check_resume_flags(args, cfg, given)
        if args.steps is not None and args.steps <= resumed["step"]:
            raise UserError(f"the run is at step {resumed['step']}: --steps {args.steps} leaves nothing to train; "
                            "pass a larger --steps")
    for key in given:
        section, field = CONFIG_FLAGS[key]
        setattr(getattr(cfg, section), field, getattr(args, key))
    if args.data_dir is not None or not resumed:            # the data may have moved since the run started
        cfg.train.data_dir = args.data_dir
    with flag_names():
        check_config(cfg)
    grid_scale = check_scale(args.grid_scale)
    grid_sampler = Sampler(eta=cfg.diffusion.eta).resolve(cfg.diffusion.timesteps)
    dist_info, device = init_distributed(resolve_device(args.device))
    data, info = load_dataset(cfg.train.dataset, cfg.train.data_dir, train=True, download=args.download)
    if not resumed:
        cfg.model = fit_to_data(cfg.model, info.shape, info.num_classes)
    with flag_names():
        check_model_config(cfg.model)                       # image size vs levels, width vs groups: before writing
    check_setup(cfg, device, dist_info, n_images=len(data))
    if resumed:
        check_resume(resumed, cfg)                          # the training state, as the config: before writing
    with output_dir(run_dir, what="run folder (--run)", lock=dist_info.is_main):
        num_threads, why = _threads(args.threads, cfg, data, device, dist_info, resumed)
        if dist_info.is_main:
            print(f"toydiff: {cfg.train.dataset} {info.shape}, {len(data)} images, {info.num_classes} classes; "
                  f"{cfg.model.kind.upper()} {build_model(cfg.model).num_parameters():,} parameters; device {device}"
                  f"{why}; run {run_dir}" + (f"; resuming from step {resumed['step']}" if resumed else ""))
        try:
            model = train(cfg, run_dir, data=data, device=device, dist_info=dist_info, resume=resumed,
                          progress=not args.no_progress, num_threads=num_threads)
        except TrainingInterrupted as stop:
            if dist_info.is_main:
                print(f"{stop}. Continue with: python train.py --run {run_dir} --resume", file=sys.stderr)
            sys.exit(stop.exit_code)
        if dist_info.is_main:
            _final_grid(model, cfg, run_dir, grid_scale, grid_sampler)


def _threads(flag: int | str, cfg, data, device, dist_info, resumed) -> tuple[int | None, str]:
    """The torch thread count to train with (None: leave torch's) and the header's words for it. Only a
    single-process CPU run of the UNet is timed: an MLP takes one thread (`cpu_threads`), a GPU does the work."""
    if flag != "auto":
        return flag, f" ({_n_threads(flag)})"
    if device.type != "cpu" or dist_info.enabled or cpu_threads(cfg.model, device) is not None:
        return None, ""
    if resumed and "threads" in resumed:
        return resumed["threads"], f" ({_n_threads(resumed['threads'])}, as the run started)"
    if "OMP_NUM_THREADS" in os.environ:
        return None, f" ({_n_threads(torch.get_num_threads())}, OMP_NUM_THREADS)"
    n, seconds = fastest_cpu_threads(cfg, data)
    timed = ", ".join(f"{k}: {v:.3g} s" for k, v in seconds.items())
    return n, f" ({_n_threads(n)}, the fastest per step of {timed})"


def _n_threads(n: int) -> str:
    return f"{n} thread{'s' * (n != 1)}"


@contextmanager
def flag_names():
    """A ConfigError about a field that a flag sets is reported with the flag's name."""
    try:
        yield
    except ConfigError as err:
        name = f"--{err.field.replace('_', '-')}" if err.field in CONFIG_FLAGS else err.field
        raise UserError(f"{name} {err.problem}") from None


def _check_resume_flags(args, stored, given: set[str]) -> None:
    """On --resume the stored config wins; a flag that contradicts it is an error, not silently ignored."""
    if args.dataset not in (None, stored.train.dataset):
        raise UserError(f"--dataset {args.dataset} differs from the resumed run's {stored.train.dataset}")
    for key in sorted(given - RESUMABLE):
        section, field = CONFIG_FLAGS[key]
        old = getattr(getattr(stored, section), field)
        if old != getattr(args, key):
            raise UserError(f"--{key.replace('_', '-')} {getattr(args, key)} differs from the resumed run's "
                            f"{old}; drop the flag, or start a new run with --run DIR")


def _final_grid(model, cfg, run_dir: str, scale: float, sampler: Sampler) -> None:
    """One row per class, CFG at `scale`, seeds 0..: a first look at what was learned (vectors in R^2: a scatter
    of POINTS_PER_CLASS per class instead)."""
    if cfg.model.data_shape != (2,) and len(cfg.model.data_shape) != 3:
        return
    points = cfg.model.data_shape == (2,)
    labels = class_rows(cfg.model.num_classes, POINTS_PER_CLASS if points else GRID_PER_CLASS)
    with torch.no_grad(), threads(cpu_threads(cfg.model, next(model.parameters()).device)):
        images = generate(guide(model.eval(), labels, scale=scale), NoiseSchedule.from_config(cfg.diffusion),
                          sampler, seeds=list(range(len(labels))))
    path = os.path.join(run_dir, f"samples_cfg{scale:g}.png")
    if points:
        from .viz2d import plot_points
        plot_points(path, images, labels, title=f"CFG s = {scale:g}, {sampler.label}")
    else:
        save_grid(images, path, nrow=GRID_PER_CLASS)
    layout = "colours" if points else "rows"
    print(f"wrote {path} ({layout}: classes 0..{cfg.model.num_classes - 1}; CFG s = {scale:g}, {sampler.label})")


if __name__ == "__main__":
    main()
