"""Training: the loss with label dropout, and the loop (EMA, autocast, DDP, checkpoints, CSV log, tqdm).

Loss, Ho et al. 2020 eq. (14) with label dropout (Ho & Salimans 2022, Alg. 1):
    t ~ U{0..T-1},  eps ~ N(0, I),  y' = null with probability p_uncond else y
    L = || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t, y') ||^2
Label dropout lives here and nowhere else: it is what teaches the one network p(x) beside p(x | y).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import signal
import time
from contextlib import contextmanager, nullcontext

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DistributedSampler, TensorDataset
from tqdm.auto import tqdm

from . import checkpoint
from .config import MAX_THREADS, Config, check_config, to_dict
from .errors import UserError, note
from .files import WriteError, atomic_write
from .runtime import Dist, fastest_threads, threads
from .schedule import NoiseSchedule
from .models import build_model, cpu_threads

LOG_FIELDS = ("step", "loss", "lr", "seconds")


class TrainingInterrupted(Exception):
    """Ctrl-C (SIGINT) or SIGTERM during training: a checkpoint was saved at `step`; exit with `exit_code`."""

    def __init__(self, step: int, path: str, signum: int):
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        super().__init__(f"interrupted by {name} at step {step}; checkpoint saved to {path}")
        self.step, self.path, self.exit_code = step, path, 128 + signum


def diffusion_loss(model: torch.nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, y: torch.Tensor, *,
                   p_uncond: float,                # P(y -> null)
                   null: int,                      # the null label, = num_classes
                   generator: torch.Generator,     # draws t, eps and the dropout mask; on x0's device
                   min_snr_gamma: float = 0.0,     # > 0: min-SNR-gamma weighting; 0: plain MSE
                   ) -> torch.Tensor:
    """Mean squared eps-prediction error with label dropout (see the module docstring). With min_snr_gamma > 0,
    each sample's error is weighted by w_t = min(SNR_t, gamma) / SNR_t, SNR_t = abar_t / (1 - abar_t) (Hang et al.
    2023, eq. 10 for an eps-model): the nearly clean levels, where eps is hard to see and matters little, weigh less."""
    B, dev = x0.shape[0], x0.device
    t = torch.randint(0, schedule.T, (B,), generator=generator, device=dev)
    noise = torch.randn(x0.shape, generator=generator, device=dev)
    drop = torch.rand(B, generator=generator, device=dev) < p_uncond
    y = torch.where(drop, torch.full_like(y, null), y)
    pred = model(schedule.q_sample(x0, t, noise), t, y).float()
    if not min_snr_gamma:
        return F.mse_loss(pred, noise)
    abar = schedule.alpha_bar.to(dev, torch.float32)[t]
    snr = abar / (1 - abar)
    weight = torch.clamp(snr, max=min_snr_gamma) / snr                       # (B,), in (0, 1]
    return (weight * (pred - noise).pow(2).flatten(1).mean(1)).mean()


def ema_with_warmup(decay: float):
    """multi_avg_fn for AveragedModel: EMA with decay min(decay, (1 + n) / (10 + n)) after n updates,
    so an early checkpoint's EMA is not dominated by the random initial weights."""
    def update(ema_params, params, num_averaged):
        d = min(decay, (1 + int(num_averaged)) / (10 + int(num_averaged)))
        if ema_params[0].is_floating_point():                    # AveragedModel groups tensors by dtype
            torch._foreach_lerp_(ema_params, params, 1 - d)          # ema <- d ema + (1 - d) param
        else:
            torch._foreach_copy_(ema_params, params)                 # a counter (BatchNorm's) is copied, not averaged
    return update


def lr_lambda(cfg: Config):
    """Linear warm-up over `warmup` steps, then cosine decay from lr to lr / 10 at `steps`."""
    tc = cfg.train

    def f(step: int) -> float:
        if step < tc.warmup:
            return (step + 1) / tc.warmup
        progress = min(1.0, (step - tc.warmup) / max(1, tc.steps - tc.warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
    return f


def step_generator(seed: int, rank: int, step: int, device: torch.device) -> torch.Generator:
    """The noise of step `step` on `rank` depends on (seed, rank, step) alone: a resumed run replays it exactly.

    The key packs (seed, rank, step) into one int, (seed * 256 + rank) * 2^32 + step; a key outside
    torch's 64-bit seed range (|seed| above ~8 million, or a negative seed) is hashed to 64 bits instead."""
    key = (seed * 256 + rank) * 2 ** 32 + step
    if not 0 <= key < 2 ** 63:
        key = int.from_bytes(hashlib.sha256(f"{seed},{rank},{step}".encode()).digest()[:8], "little")
    return torch.Generator(device=device).manual_seed(key)


class BatchOrder:
    """This rank's batch indices at a global step. Epoch e = step // steps_per_epoch is a fresh
    DistributedSampler permutation seeded by (seed, e): the data order is a function of the step alone."""

    def __init__(self, n: int, cfg: Config, dist_info: Dist):
        self.local = cfg.train.batch_size // dist_info.world_size
        self.sampler = DistributedSampler(range(n), num_replicas=dist_info.world_size, rank=dist_info.rank,
                                          shuffle=True, seed=cfg.train.seed, drop_last=True)
        self.per_epoch = len(self.sampler) // self.local           # >= 1: see check_setup
        self.epoch, self.order = -1, None

    def __call__(self, step: int) -> torch.Tensor:
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self.epoch:
            self.sampler.set_epoch(epoch)
            self.epoch, self.order = epoch, torch.tensor(list(self.sampler))
        return self.order[k * self.local:(k + 1) * self.local]


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)      # Ctrl-C; how clusters pre-empt a job


@contextmanager
def stop_signals():
    """While active, the first SIGINT or SIGTERM sets flag["signal"]: the loop saves at the end of the step and
    stops. A second one aborts (KeyboardInterrupt), except during a save (flag["saving"]), which it lets finish."""
    flag = {"signal": None, "saving": False, "again": False}

    def handler(signum, frame):
        if flag["signal"] is None:
            flag["signal"] = signum
        elif flag["saving"]:
            flag["again"] = True
        else:
            raise KeyboardInterrupt
    try:
        previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    except ValueError:                          # not the main thread: leave signals alone
        previous = {}
    try:
        yield flag
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def check_setup(cfg: Config, device: torch.device, dist_info: Dist = Dist(), *, n_images: int | None = None) -> None:
    """Refuse a config this device, process group and dataset (of `n_images`) cannot train (beyond
    `check_config`)."""
    check_config(cfg)
    if n_images is not None and n_images // dist_info.world_size < cfg.train.batch_size // dist_info.world_size:
        raise UserError(f"the dataset has {n_images} images, fewer than one batch of {cfg.train.batch_size}; "
                        "lower --batch-size")
    if cfg.train.batch_size % dist_info.world_size:
        raise UserError(f"batch size {cfg.train.batch_size} is not divisible by the {dist_info.world_size} "
                        "processes; pick a multiple")
    if cfg.train.amp == "fp16" and device.type != "cuda":
        raise UserError("amp fp16 needs a CUDA device; use bf16 or none")


def train(cfg: Config, run_dir: str, *,
          data: TensorDataset,              # training images in [-1, 1] and labels
          device: torch.device,
          dist_info: Dist = Dist(),
          resume: dict | None = None,       # a loaded checkpoint (`checkpoint.load`) to continue from; its
                                            # weights, optimizer, RNG and step are restored, `cfg` is used as given
          progress: bool = True,            # tqdm bar on rank 0
          num_threads: int | None = None,   # torch threads on the CPU (None: unchanged; see `fastest_cpu_threads`)
          ) -> torch.nn.Module:
    """Train and checkpoint into `run_dir`; return the EMA model (rank 0) or the raw model (other ranks).

    Raises TrainingInterrupted on Ctrl-C (after saving) and UserError on a non-finite loss (keeping the
    last good checkpoint). An MLP on the CPU trains on one thread: its matrices are too small to split, and on a
    busy 2-core CPU two threads were measured ~30x slower per step (10 ms vs 300 ms, the toy2d preset).
    """
    with threads(num_threads or cpu_threads(cfg.model, device)):
        return _train(cfg, run_dir, data=data, device=device, dist_info=dist_info, resume=resume, progress=progress)


def _train(cfg: Config, run_dir: str, *, data: TensorDataset, device: torch.device, dist_info: Dist,
           resume: dict | None, progress: bool) -> torch.nn.Module:
    tc = cfg.train
    check_setup(cfg, device, dist_info, n_images=len(data))
    torch.manual_seed(tc.seed)
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    model, ema, optimizer, scheduler = _training_objects(cfg, device)
    start, elapsed = 0, 0.0
    if resume is not None:
        start, elapsed = restore(resume, model, ema, optimizer, scheduler)
        torch.set_rng_state(resume["rng"]["torch"])
    net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if dist_info.enabled else model
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[tc.amp]     # checked by check_config
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else nullcontext
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)

    ckpt_path, _ = checkpoint.locate(run_dir)
    images, labels = data.tensors
    null = cfg.model.num_classes

    def save(step: int, path: str = ckpt_path) -> None:
        """Checkpoint atomically; a second signal meanwhile waits for the write. The first save of a fresh run
        is when an overwritten run's files go (its checkpoints, its log): until then a crash loses neither."""
        if not dist_info.is_main:
            return
        interrupted["saving"] = True
        try:
            checkpoint.save({"config": to_dict(cfg), "step": step, "seconds": elapsed + time.time() - t0,
                             "model": model.state_dict(), "ema": ema.module.state_dict(),
                             "ema_updates": int(ema.n_averaged), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "rng": {"torch": torch.get_rng_state()},
                             "threads": torch.get_num_threads()},    # a resume replays the same arithmetic
                            path)
            for stale in old_run:
                if stale != path and os.path.exists(stale):
                    os.remove(stale)
            old_run.clear()
            log.commit()
        except WriteError as err:               # disk full, folder removed...: the previous file is intact
            raise UserError(f"{err}; stopped at step {step}. {_last_good(last_good, ckpt_path)}") from None
        finally:
            interrupted["saving"] = False
        if interrupted["again"]:
            raise KeyboardInterrupt

    order = BatchOrder(len(images), cfg, dist_info)
    if dist_info.is_main:                       # the last check passed: from here on the run writes
        os.makedirs(run_dir, exist_ok=True)
        checkpoint.remove_partial_writes(run_dir)
    old_run = [] if resume is not None or not dist_info.is_main else checkpoint.run_checkpoints(run_dir)
    log = CsvLog(os.path.join(run_dir, checkpoint.LOG_FILE), keep_until=start) if dist_info.is_main else None
    loss_sum, n_sum, last_check, last_good = torch.zeros((), device=device), 0, start, start
    bar = tqdm(total=tc.steps, initial=start, disable=not (progress and dist_info.is_main),
               desc=f"train {tc.dataset}", unit="step", dynamic_ncols=True)
    t0 = time.time()
    with stop_signals() as interrupted:
        for step in range(start, tc.steps):
            idx = order(step)
            x0, y = images[idx].to(device, non_blocking=True), labels[idx].to(device, non_blocking=True)
            with autocast():
                loss = diffusion_loss(net, schedule, x0, y, p_uncond=tc.p_uncond, null=null,
                                      generator=step_generator(tc.seed, dist_info.rank, step, device),
                                      min_snr_gamma=tc.min_snr_gamma)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            ema.update_parameters(model)
            loss_sum += loss.detach()
            n_sum += 1
            done = step + 1
            bar.update(1)

            if dist_info.enabled:     # all ranks must stop at the same step: agree at log boundaries
                stop = done % tc.log_every == 0 and _any_rank(interrupted["signal"] is not None, device)
            else:
                stop = interrupted["signal"] is not None
            keep = bool(tc.keep_every) and done % tc.keep_every == 0
            save_now = done % tc.ckpt_every == 0 or done == tc.steps or stop
            if done % tc.log_every == 0 or save_now or keep:
                mean = (loss_sum / n_sum).item()        # one host sync per log interval
                # checked before anything is saved; a finite loss can still come with NaN gradients that
                # poisoned the weights in its optimizer step, so the weights are checked before each save
                if not math.isfinite(mean) or ((save_now or keep) and not _all_finite(model)):
                    raise UserError(f"loss or weights became non-finite between steps {last_check} and {done}; "
                                    f"stopped. {_last_good(last_good, ckpt_path)}. If it diverges again, start a "
                                    "new run with a lower --lr (or --amp none)")
                if log is not None:
                    try:
                        log.write(done, mean, scheduler.get_last_lr()[0], elapsed + time.time() - t0)
                    except OSError as err:
                        raise UserError(f"could not write {log.path} ({err.strerror or err}); stopped at step "
                                        f"{done}. {_last_good(last_good, ckpt_path)}") from None
                bar.set_postfix(loss=f"{mean:.4f}")
                loss_sum.zero_()
                n_sum, last_check = 0, done
            if save_now:
                save(done)
                last_good = done
            if keep:
                save(done, os.path.join(run_dir, checkpoint.kept_name(done)))
            if stop:
                bar.close()
                raise TrainingInterrupted(done, ckpt_path, interrupted["signal"] or signal.SIGINT)
    bar.close()
    return ema.module if dist_info.is_main else model


def fastest_cpu_threads(cfg: Config, data: TensorDataset) -> tuple[int, dict[int, float]]:
    """The torch thread count at which a training step of `cfg` runs fastest on this CPU now, and each candidate's
    seconds per step (`runtime.fastest_threads`): forward and backward of one batch of `data` through a scratch
    model, so the run's weights and random state are untouched. A few steps' time; the thread count changes
    float rounding, so a run keeps the count it started with (the checkpoint stores it)."""
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg.model).train()
        gen = torch.Generator().manual_seed(0)
        images, labels = data.tensors
        idx = torch.randperm(len(images), generator=gen)[:cfg.train.batch_size]
        schedule = NoiseSchedule.from_config(cfg.diffusion)

        def step():
            loss = diffusion_loss(model, schedule, images[idx], labels[idx], p_uncond=cfg.train.p_uncond,
                                  null=cfg.model.num_classes, generator=gen, min_snr_gamma=cfg.train.min_snr_gamma)
            loss.backward()
            model.zero_grad(set_to_none=True)
        return fastest_threads(step)


def _training_objects(cfg: Config, device: torch.device) -> tuple:
    """(model, EMA, AdamW, LR schedule), freshly built: what a checkpoint's training state is restored into."""
    model = build_model(cfg.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    ema = AveragedModel(model, multi_avg_fn=ema_with_warmup(cfg.train.ema_decay), use_buffers=True)
    return model, ema, optimizer, scheduler


def check_resume(resume: dict, cfg: Config) -> None:
    """Refuse a checkpoint's training state before anything runs or is written (as `check_config` refuses a
    config): `restore` into scratch objects on the CPU, which `train` then repeats on its own."""
    with torch.random.fork_rng(devices=[]):     # building the scratch model draws from the global RNG
        restore(resume, *_training_objects(cfg, torch.device("cpu")))


def restore(resume: dict, model, ema, optimizer, scheduler) -> tuple[int, float]:
    """Load a checkpoint's training state into freshly built (model, EMA, AdamW, LR schedule); return (step,
    seconds trained). Everything is checked, since the file may be crafted: each part present and of its type,
    the weights and Adam's moments of the model's shapes and finite, the optimizer's settings those the config
    gives (betas, eps, weight decay, lr), the counters within the step. Any fault is one UserError."""
    def refuse(what: str):
        raise UserError(f"cannot resume: the checkpoint's training state {what}; sample from it, or start a new "
                        "run in another folder")

    step, seconds = resume["step"], resume.get("seconds", 0.0)
    if not _is_number(seconds) or not 0 <= seconds < math.inf:
        refuse(f"has seconds {seconds!r}, not a time")
    if type(resume.get("ema_updates")) is not int or not 0 <= resume["ema_updates"] <= step:
        refuse(f"has ema_updates {resume.get('ema_updates')!r}, not a count of steps up to {step}")
    n = resume.get("threads", 1)                  # absent in checkpoints written before toydiff stored it
    if type(n) is not int or not 1 <= n <= MAX_THREADS:
        refuse(f"has threads {n!r}, not a thread count in 1..{MAX_THREADS}")
    rng = resume.get("rng")
    if not (isinstance(rng, dict) and isinstance(rng.get("torch"), torch.Tensor) and rng["torch"].dtype == torch.uint8
            and rng["torch"].shape == torch.get_rng_state().shape):
        refuse("has no torch RNG state of the right size")
    expected = [dict(g) for g in optimizer.param_groups]              # what the config gives
    if not isinstance(resume.get("scheduler"), dict) or set(resume["scheduler"]) - set(scheduler.state_dict()):
        refuse("has no learning-rate schedule, or one with fields this toydiff never writes")
    for name, load in (("model", model.load_state_dict), ("ema", ema.module.load_state_dict),
                       ("optimizer", optimizer.load_state_dict), ("scheduler", scheduler.load_state_dict)):
        if name not in resume:
            refuse(f"is incomplete (no {name!r})")
        try:
            load(resume[name])
        except (KeyError, RuntimeError, TypeError, ValueError, AttributeError, IndexError) as err:
            refuse(f"({name!r}) does not fit the model ({type(err).__name__}: {_first_line(err)[:80]})")
    ema.n_averaged.fill_(resume["ema_updates"])
    if not (_all_finite(model) and _all_finite(ema.module)):
        refuse("holds NaN or infinite weights")
    for group, want in zip(optimizer.param_groups, expected):
        wrong = [k for k in want if k not in ("params", "lr") and _plain(group.get(k, want[k])) != _plain(want[k])]
        if wrong:
            refuse(f"has optimizer settings the config does not give ({', '.join(f'{k} {group[k]!r}' for k in wrong)})")
        if not _is_number(group["lr"]) or not 0 <= group["lr"] <= want["initial_lr"] * (1 + 1e-6):
            refuse(f"has learning rate {group['lr']!r}, outside 0..{want['initial_lr']:g} (--lr)")
    params = {id(p): p for p in model.parameters()}
    for p, state in optimizer.state.items():
        moments = [state.get(k) for k in ("exp_avg", "exp_avg_sq")] if isinstance(state, dict) else []
        count = state.get("step") if isinstance(state, dict) else None
        if id(p) not in params or len(moments) != 2 or not all(
                isinstance(m, torch.Tensor) and m.is_floating_point() and m.shape == p.shape and m.isfinite().all()
                for m in moments) or (moments[1] < 0).any():
            refuse("has Adam moments that are missing, of another shape than the model's, or not finite")
        count = count.item() if isinstance(count, torch.Tensor) and count.numel() == 1 else count
        if not _is_number(count) or not 0 <= count <= step or count != int(count):     # NaN fails the range
            refuse(f"has an optimizer step {count!r}, not a count up to the run's step {step}")
    if (scheduler.last_epoch != step or scheduler.base_lrs != [g["initial_lr"] for g in expected]
            or not all(_is_number(v) and 0 <= v < math.inf for v in scheduler.get_last_lr())):
        refuse(f"has a learning-rate schedule at another step than {step}, or with other rates than the config's")
    return step, float(seconds)


def _is_number(v) -> bool:
    """An int or float (not a bool, not a string): float(v) then compares and formats as a number."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _plain(v):
    """Lists as tuples, so a setting reads the same however the file stored it."""
    return tuple(v) if isinstance(v, (list, tuple)) else v


def _all_finite(model: torch.nn.Module) -> bool:
    return bool(torch.stack([p.isfinite().all() for p in model.parameters()]).all())


def _last_good(step: int, path: str) -> str:
    """Where a stopped run can continue from (step 0: nothing was saved yet)."""
    if step == 0:
        return "No checkpoint was written yet: start again"
    return f"Last good checkpoint: step {step} in {path}; continue with --resume"


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if `flag` is set on any (all ranks must stop at the same step)."""
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class CsvLog:
    """log.csv: step, loss, lr, seconds; a side record of one run.

    Resumed at step S, it keeps the well-formed rows up to S (rows past S will be replayed) and drops damaged lines
    (a power loss can leave a NUL-byte tail), with one note saying how many. A fresh run's rows wait in memory until
    its first checkpoint (`commit`), so an overwritten run's log is replaced only then."""

    def __init__(self, path: str, keep_until: int):
        self.path, self.pending = path, []
        if keep_until == 0:
            return
        rows, damaged = self._read(keep_until)
        if damaged:
            note(f"{path}: dropped {damaged} damaged line(s); kept the {len(rows)} rows up to step {keep_until}")
        self.pending = rows
        self.commit()

    def _read(self, keep_until: int) -> tuple[list[list[str]], int]:
        try:
            with open(self.path, "rb") as f:
                text = f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return [], 0
        rows, damaged = [], 0
        for line in text.splitlines()[1:]:
            row = next(csv.reader([line]), [])
            try:
                ok = len(row) == len(LOG_FIELDS) and "\x00" not in line and [float(v) for v in row[1:]]
                step = int(row[0]) if ok else None
            except ValueError:
                step = None
            if step is None or step <= 0:
                damaged += bool(line.strip())
            elif step <= keep_until:
                rows.append(row)
        return rows, damaged

    def commit(self) -> None:
        """Write the pending rows: the whole file, atomically, the first time; appended after that."""
        if self.pending is None:
            return
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(LOG_FIELDS)
        w.writerows(self.pending)
        atomic_write(self.path, lambda f: f.write(buf.getvalue().encode()))
        self.pending = None

    def write(self, step: int, loss: float, lr: float, seconds: float) -> None:
        row = [step, f"{loss:.6f}", f"{lr:.6g}", f"{seconds:.2f}"]
        if self.pending is not None:
            self.pending.append(row)
            return
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(row)
