"""DistributedDataParallel on the CPU: two gloo processes train in lockstep and write one loadable checkpoint."""

import os
import socket
import subprocess
import sys

import torch
import torch.multiprocessing as mp

from toydiff import checkpoint
from toydiff.training import train

from conftest import TINY_TRAIN_FLAGS, tiny_config
from test_training import few_digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, run: str, out: str) -> None:
    import torch.distributed as dist
    from toydiff.runtime import init_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info, device = init_distributed(torch.device("cpu"))
    assert dist.get_backend() == "gloo" and info.rank == rank
    model = train(tiny_config(steps=6, ckpt_every=3, log_every=3), run, data=few_digits(), device=device,
                  dist_info=info, progress=False)
    raw = model.module if hasattr(model, "module") else model
    torch.save(raw.state_dict() if rank else None, os.path.join(out, f"rank{rank}.pt"))
    if rank == 0:
        torch.save(checkpoint.load(os.path.join(run, "ckpt.pt"))["model"], os.path.join(out, "rank0.pt"))
    dist.destroy_process_group()


def test_two_gloo_ranks_hold_identical_weights_and_one_checkpoint(tmp_path):
    run = str(tmp_path / "run")
    mp.spawn(_worker, args=(2, free_port(), run, str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt")           # the raw weights rank 0 checkpointed
    rank1 = torch.load(tmp_path / "rank1.pt")           # the raw weights rank 1 ended with
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    loaded = checkpoint.load_run(os.path.join(run, "ckpt.pt"))                 # loads in one process
    assert loaded.step == 6 and loaded.cfg.train.batch_size == 16
    assert sorted(os.listdir(run)) == ["ckpt.pt", "log.csv"]                   # rank 0 alone wrote


def test_torchrun_trains_and_resumes_through_the_cli(tmp_path):
    run = str(tmp_path / "run")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
              os.path.join(ROOT, "train.py"), "--run-dir", run, "--device", "cpu", *TINY_TRAIN_FLAGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for extra in (["--steps", "4"], ["--steps", "8", "--resume"]):
        proc = subprocess.run(launch + extra, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
    step = checkpoint.load_run(os.path.join(run, "ckpt.pt")).step
    assert step == 8
    with open(os.path.join(run, "log.csv")) as f:
        steps = [int(line.split(",")[0]) for line in f.read().split()[1:]]
    assert steps == [4, 5, 8]             # 4 = end of the first launch; then the resumed run's log rows
