"""Training never loses a run: kill -9 and --resume, a crash mid-checkpoint, a non-finite loss, Ctrl-C, clobbering.

The kill and Ctrl-C tests drive `python train.py` as a real process and wait for log.csv rows (polling, never
fixed sleeps), so they hold on a slow or busy machine.
"""

import csv
import glob
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from toydiff import checkpoint, train_cli, training
from toydiff.data import load_dataset
from toydiff.errors import UserError
from toydiff.files import WriteError
from toydiff.train_cli import main as train_main

from conftest import TINY_TRAIN_FLAGS, tiny_config
from test_training import few_digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CKPT_EVERY = 5                                   # TINY_TRAIN_FLAGS: --ckpt-every 5 --log-every 5


# ---------------------------------------------------------------- helpers

@pytest.fixture
def no_grid(monkeypatch):
    """Skip the sample grid at the end of train.py (it costs more than the tiny training runs here)."""
    monkeypatch.setattr(train_cli, "_final_grid", lambda *args, **kwargs: None)

def start_train(argv):
    """`python train.py ...` as a real process, with this process's thread count (bitwise-equal arithmetic)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *argv], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def logged_steps(run):
    """Steps of the complete rows in run/log.csv so far (the file may be half-written while we read)."""
    try:
        with open(os.path.join(run, "log.csv")) as f:
            lines = f.read().splitlines()[1:]
    except FileNotFoundError:
        return []
    return [int(line.split(",")[0]) for line in lines if line.count(",") == 3]


def wait_until(condition, proc, timeout=180.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"train.py exited early with {proc.returncode}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("train.py made no progress in time")
        time.sleep(0.005)


def log_rows(run):
    """(step, loss, lr) of every row; `seconds` differs between runs by nature."""
    with open(os.path.join(run, "log.csv"), newline="") as f:
        return [(r["step"], r["loss"], r["lr"]) for r in csv.DictReader(f)]


def stray_files(run):
    return glob.glob(os.path.join(run, "*.tmp"))


def assert_same_weights(a_path, b_path):
    a, b = torch.load(a_path, weights_only=True), torch.load(b_path, weights_only=True)
    assert a["step"] == b["step"]
    for key in ("model", "ema", "optimizer", "scheduler"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def half_written(then):
    """A torch.save that writes the first half of the real bytes into the file and then calls `then()`."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
        f.flush()
        then()
    return save


def exit_code_and_stderr(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(argv)
    return exit_info.value.code, capsys.readouterr().err.strip()


# ---------------------------------------------------------------- kill -9 and resume

def test_kill_9_then_resume_reproduces_the_uninterrupted_run(tmp_path, no_grid):
    """SIGKILL a real training process once a checkpoint exists; --resume loses at most one checkpoint
    interval and then replays the uninterrupted run: the same log rows and bitwise the same final weights."""
    killed, straight, steps = str(tmp_path / "killed"), str(tmp_path / "straight"), 40
    proc = start_train(["--run", killed, *TINY_TRAIN_FLAGS, "--steps", str(steps)])
    wait_until(lambda: max(logged_steps(killed), default=0) >= 2 * CKPT_EVERY, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    last_logged = max(logged_steps(killed))
    at_kill = checkpoint.load(os.path.join(killed, "ckpt.pt"))["step"]         # loads: never half-written
    assert last_logged - CKPT_EVERY <= at_kill < steps, (last_logged, at_kill)  # lost <= one interval

    train_main(["--run", killed, "--resume", "--no-progress"])
    cfg = checkpoint.config_of(checkpoint.load(os.path.join(killed, "ckpt.pt")))     # the config train.py built
    training.train(cfg, straight, data=load_dataset("digits")[0], device=torch.device("cpu"), progress=False)
    assert [int(s) for s, _, _ in log_rows(killed)] == list(range(5, steps + 1, 5))   # a row per 5 steps, no gap
    assert log_rows(killed) == log_rows(straight)
    assert_same_weights(os.path.join(killed, "ckpt.pt"), os.path.join(straight, "ckpt.pt"))
    assert stray_files(killed) == []


# ---------------------------------------------------------------- a crash while writing a checkpoint

def disk_full():
    raise OSError(28, "No space left on device")


def test_a_failed_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.pt")
    payload = {"config": {}, "model": {"w": torch.ones(1000)}, "ema": {}, "step": 1}
    checkpoint.save(payload, path)
    monkeypatch.setattr(torch, "save", half_written(disk_full))
    with pytest.raises(WriteError, match="No space left on device"):
        checkpoint.save({**payload, "step": 2}, path)
    assert checkpoint.load(path)["step"] == 1
    assert os.listdir(tmp_path) == ["ckpt.pt"]                    # the half-written temp file is gone


def test_a_failed_save_during_training_stops_with_one_line_and_resume_continues(tmp_path, monkeypatch):
    run = str(tmp_path)
    real_save = checkpoint.save
    calls = []

    def save_then_fail(payload, path):
        calls.append(payload["step"])
        if len(calls) == 2:                                  # the step-10 checkpoint fails half-way
            with monkeypatch.context() as m:
                m.setattr(torch, "save", half_written(disk_full))
                return real_save(payload, path)
        return real_save(payload, path)
    monkeypatch.setattr(checkpoint, "save", save_then_fail)
    cfg, data, cpu = tiny_config(steps=10, ckpt_every=5, log_every=5), few_digits(), torch.device("cpu")
    with pytest.raises(UserError, match=r"could not write .*ckpt.pt.*No space left.*step 5.*--resume"):
        training.train(cfg, run, data=data, device=cpu, progress=False)
    monkeypatch.undo()
    assert checkpoint.load(os.path.join(run, "ckpt.pt"))["step"] == 5 and stray_files(run) == []
    training.train(cfg, run, data=data, device=cpu, resume=checkpoint.load(run), progress=False)
    assert checkpoint.load(os.path.join(run, "ckpt.pt"))["step"] == 10


KILL_MID_SAVE = """
import io, os, signal, sys, torch
from toydiff import checkpoint
path = sys.argv[1]
payload = checkpoint.load(path)
real_save = torch.save
def half_then_die(obj, f):
    buf = io.BytesIO()
    real_save(obj, buf)
    f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
    f.flush()
    os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = half_then_die
checkpoint.save({**payload, "step": 999}, path)
"""


def test_kill_9_in_the_middle_of_a_checkpoint_write(trained_run, tmp_path):
    """A process killed half-way through writing ckpt.pt leaves the old file intact (plus a temp file that the
    next training run in that folder removes)."""
    run = str(tmp_path / "run")
    shutil.copytree(trained_run, run)                              # a 10-step run of train.py
    proc = subprocess.run([sys.executable, "-c", KILL_MID_SAVE, os.path.join(run, "ckpt.pt")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(stray_files(run)) == 1                              # the kill really landed mid-write
    assert checkpoint.load(os.path.join(run, "ckpt.pt"))["step"] == 10
    cfg = checkpoint.config_of(checkpoint.load(os.path.join(run, "ckpt.pt")))
    cfg.train.steps = 11
    training.train(cfg, run, data=few_digits(), device=torch.device("cpu"),
                   resume=checkpoint.load(run), progress=False)
    assert checkpoint.load(os.path.join(run, "ckpt.pt"))["step"] == 11 and stray_files(run) == []


# ---------------------------------------------------------------- non-finite loss

def poison_loss(monkeypatch, *, from_call, how):
    """Make diffusion_loss return how(loss) from its `from_call`-th call on (call k trains step k)."""
    real, calls = training.diffusion_loss, [0]

    def loss(*args, **kwargs):
        calls[0] += 1
        value = real(*args, **kwargs)
        return how(value, calls[0]) if calls[0] >= from_call else value
    monkeypatch.setattr(training, "diffusion_loss", loss)


@pytest.mark.parametrize("from_call, how, last_good", [
    (8, lambda loss, call: loss * float("nan"), 5),                    # the loss itself turns NaN at step 8
    # step 10 has a finite loss but NaN gradients (d sqrt(u)/du = inf at u = 0, times 0): the weights saved at
    # step 10 would be NaN, so step 5 is the last good checkpoint
    (10, lambda loss, call: loss + (0 * loss).sqrt() if call == 10 else loss, 5),
], ids=["nan-loss", "nan-gradients"])
def test_a_non_finite_loss_stops_keeping_the_last_good_checkpoint(tmp_path, monkeypatch, capsys, no_grid,
                                                                  from_call, how, last_good):
    run = str(tmp_path / "run")
    with monkeypatch.context() as m:
        poison_loss(m, from_call=from_call, how=how)
        code, err = exit_code_and_stderr(["--run", run, *TINY_TRAIN_FLAGS, "--steps", "15"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "non-finite" in err, err
    assert f"step {last_good}" in err and "--resume" in err
    loaded = checkpoint.load_run(os.path.join(run, "ckpt.pt"), weights="model")
    model, step = loaded.model, loaded.step
    assert step == last_good and all(p.isfinite().all() for p in model.parameters())
    assert max(logged_steps(run)) == last_good

    if from_call == 8:                                               # once is enough: --resume carries on
        train_main(["--run", run, "--resume", "--no-progress"])
        loaded = checkpoint.load_run(os.path.join(run, "ckpt.pt"))
        model, step = loaded.model, loaded.step
        assert step == 15 and all(p.isfinite().all() for p in model.parameters())
        assert logged_steps(run) == [5, 10, 15]


# ---------------------------------------------------------------- Ctrl-C

def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    run = str(tmp_path / "run")
    proc = start_train(["--run", run, *TINY_TRAIN_FLAGS, "--steps", "100000"])
    wait_until(lambda: logged_steps(run), proc)                    # inside the loop: the handler is installed
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    step = int(re.search(r"interrupted by Ctrl-C at step (\d+)", err).group(1))
    assert f"Continue with: python train.py --run {run} --resume" in err
    assert checkpoint.load(os.path.join(run, "ckpt.pt"))["step"] == step
    assert CKPT_EVERY <= step < 100000 and max(logged_steps(run)) <= step and stray_files(run) == []


# ---------------------------------------------------------------- a folder that holds another run

def test_overwrite_replaces_the_whole_run_and_resume_refuses_a_changed_model(trained_run, tmp_path, capsys,
                                                                            no_grid):
    """Refusal without --resume/--overwrite is tests/test_cli.py::test_train_refuses_to_clobber_an_existing_run."""
    run = str(tmp_path / "run")
    shutil.copytree(trained_run, run)
    shutil.copy(os.path.join(run, "ckpt.pt"), os.path.join(run, "ckpt_step10.pt"))   # a kept checkpoint
    before = open(os.path.join(run, "ckpt.pt"), "rb").read()
    for argv, message in [(["--resume", "--width", "32"], "--width 32 differs from the resumed run's 16"),
                          (["--resume", "--overwrite"], "contradict"),
                          (["--resume", "--dataset", "mnist"], "differs from the resumed run's digits")]:
        code, err = exit_code_and_stderr(["--run", run, *argv, "--no-progress"], capsys)
        assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert open(os.path.join(run, "ckpt.pt"), "rb").read() == before

    train_main(["--run", run, "--overwrite", *TINY_TRAIN_FLAGS, "--steps", "5", "--seed", "1"])
    assert checkpoint.load(os.path.join(run, "ckpt.pt"))["step"] == 5
    assert logged_steps(run) == [5]
    assert not os.path.exists(os.path.join(run, "ckpt_step10.pt"))      # no stale checkpoint of the old run
