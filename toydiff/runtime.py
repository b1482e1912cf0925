"""Where code runs: device choice and the torch.distributed process group (torchrun sets the env vars)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks cuda, then mps, then cpu; an explicit device that is not there is a UserError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):     # meta, xpu, ...: nothing toydiff runs on
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name} asked for a GPU but CUDA is not available here; use cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("device mps asked for Apple's GPU but MPS is not available here; use cpu")
    return device


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the torchrun process group if WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU); else single process.

    Under torchrun on CUDA each rank takes GPU LOCAL_RANK.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (e.g. 'AMD EPYC 7B13'), else what `platform` knows."""
    import platform

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return name


@contextmanager
def threads(n: int | None):
    """Run with `n` torch intra-op threads (None: unchanged). An 8x8 CNN or a 128 x 128 eigh is too small to
    split across threads: on a busy 2-core CPU one thread is ~20x faster than two."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def thread_candidates(n: int | None = None) -> list[int]:
    """The torch thread counts worth trying on this CPU: torch's default n (one per core), n - 1, n // 2 and 1."""
    n = n or torch.get_num_threads()
    return sorted({n, max(1, n - 1), max(1, n // 2), 1}, reverse=True)


def fastest_threads(step: Callable[[], object], candidates: list[int] | None = None, *,
                    repeats: int = 3) -> tuple[int, dict[int, float]]:
    """The thread count at which `step()` runs fastest on this CPU now, and each candidate's median seconds (one
    warm-up call, then `repeats` timed ones, per candidate). Why measure: torch splits every op across all its
    threads, and each op waits for the slowest; beside one busy process on a 2-core CPU, the thread that shares
    a core with it holds every op up (a step of the MNIST preset: 2.67 s on two threads, 0.61 s on one; on a
    quiet machine 0.32 s and 0.57 s; benchmarks/bench.py `busy`, docs/benchmarks.md)."""
    seconds = {}
    for n in candidates or thread_candidates():
        with threads(n):
            step()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
        seconds[n] = statistics.median(times)
    return min(seconds, key=seconds.get), seconds
