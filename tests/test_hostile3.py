"""Hostile input, round 3 (issue 21), class by class: the lock, a crafted training state, folders that are not what
they seem, faults while writing, shapes the studies did not expect, the benchmarks, output streams. Each refusal is
one line `error: ...`, exit 2, nothing written; the lock, signal and stream cases run real processes."""

import copy
import errno
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from toydiff import checkpoint, train_cli
from toydiff.errors import UserError
from toydiff.sample_cli import main as sample_main
from toydiff.train_cli import main as train_main
from toydiff.training import check_resume

from conftest import TINY_TRAIN_FLAGS
from test_bad_input import NO_GPU, mnist_files, refused, snapshot
from test_faults import ROOT, no_grid, stray_files, wait_until  # noqa: F401
from test_hostile import copy_run

SAMPLE = ["--n", "1", "--sample-steps", "2"]


def python(script, *argv, stdout=subprocess.PIPE):
    """`python <script> argv` from the repository root, on one torch thread."""
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *argv], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def one_error_line(proc, message):
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), proc.stderr
    assert message in err and "Traceback" not in err, err


def listing(folder):
    """Every name under `folder`, dot files too (a lock file is a write)."""
    return sorted(os.path.relpath(os.path.join(d, n), folder) for d, dirs, files in os.walk(folder)
                  for n in dirs + files)


# ---------------------------------------------------------------- 1. a planted lock

def test_a_lock_link_planted_in_a_run_is_refused_and_never_written_through(trained_run, tmp_path):
    run, victim = copy_run(trained_run, tmp_path), tmp_path / "victim.txt"
    victim.write_text("precious")
    os.remove(os.path.join(run, ".lock"))
    os.symlink(victim, os.path.join(run, ".lock"))
    before = snapshot(run)
    one_error_line(python("train.py", "--run", run, "--resume", "--steps", "12", "--no-progress"),
                   ".lock is a symbolic link")
    assert victim.read_text() == "precious" and snapshot(run) == before


def plant(lock, kind, victim):
    {"symlink": lambda: os.symlink(victim, lock), "hard link": lambda: os.link(victim, lock),
     "folder": lambda: os.mkdir(lock), "fifo": lambda: os.mkfifo(lock)}[kind]()


@pytest.mark.parametrize("kind, message", [("symlink", "a symbolic link"), ("hard link", "a hard link"),
                                           ("folder", "a folder"), ("fifo", "a special file")])
def test_a_planted_lock_of_any_kind_is_refused_by_train_and_sample(trained_run, tmp_path, capsys, kind, message):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run, out = tmp_path / "run", tmp_path / "out"
    for folder in (run, out):
        folder.mkdir()
        plant(folder / ".lock", kind, victim)
    refused(train_main, ["--run", str(run), *TINY_TRAIN_FLAGS, "--steps", "2"], capsys, message)
    refused(sample_main, ["--run", trained_run, *SAMPLE, "--out", str(out)], capsys, message)
    assert victim.read_text() == "precious" and listing(run) == listing(out) == [".lock"]


# ---------------------------------------------------------------- 2. a crafted training state

def _adam(c):
    return c["optimizer"]["state"][0]


STATES = {
    "a moment of another shape": (lambda c: _adam(c).update(exp_avg=torch.zeros(3, 3)), "Adam moments"),
    "NaN moments": (lambda c: _adam(c)["exp_avg_sq"].fill_(float("nan")), "Adam moments"),
    "negative second moments": (lambda c: _adam(c)["exp_avg_sq"].fill_(-1.0), "Adam moments"),
    "a NaN learning rate": (lambda c: c["optimizer"]["param_groups"][0].update(lr=float("nan")), "learning rate nan"),
    "bad betas": (lambda c: c["optimizer"]["param_groups"][0].update(betas=(1.5, 0.999)), "betas (1.5, 0.999)"),
    "eps 0": (lambda c: c["optimizer"]["param_groups"][0].update(eps=0.0), "eps 0.0"),
    "seconds as a string": (lambda c: c.update(seconds="1.0"), "seconds '1.0'"),
    "NaN seconds": (lambda c: c.update(seconds=float("nan")), "seconds nan"),
    "the optimizer's step as a string": (lambda c: _adam(c).update(step="10"), "('optimizer') does not fit"),
    "an optimizer step beyond the run": (lambda c: _adam(c).update(step=torch.tensor(1e9)), "step 1000000000.0"),
    "a NaN optimizer step": (lambda c: _adam(c).update(step=torch.tensor(float("nan"))), "optimizer step nan"),
    "ema_updates as a string": (lambda c: c.update(ema_updates="10"), "ema_updates '10'"),
    "a short RNG state": (lambda c: c["rng"].update(torch=torch.zeros(9, dtype=torch.uint8)), "torch RNG state"),
    "a schedule at another step": (lambda c: c["scheduler"].update(last_epoch=3), "schedule at another step"),
    "a schedule with a foreign field": (lambda c: c["scheduler"].update(optimizer=5), "never writes"),
    "NaN raw weights": (lambda c: next(iter(c["model"].values())).fill_(float("nan")), "NaN or infinite"),
    "no optimizer": (lambda c: c.pop("optimizer"), "incomplete (no 'optimizer')"),
    "a thread count as a string": (lambda c: c.update(threads="2"), "threads '2'"),
    "no threads at all": (lambda c: c.update(threads=0), "threads 0"),
}


@pytest.mark.parametrize("case", STATES)
def test_a_crafted_training_state_is_refused_before_the_run_folder_is_touched(trained_run, tmp_path, capsys, case):
    craft, message = STATES[case]
    ckpt = torch.load(os.path.join(trained_run, "ckpt.pt"), weights_only=True)
    craft(ckpt)
    run = tmp_path / "run"
    run.mkdir()
    torch.save(ckpt, run / "ckpt.pt")
    before = (listing(run), snapshot(str(run)))
    err = refused(train_main, ["--run", str(run), "--resume", "--steps", "12", "--no-progress"], capsys,
                  "cannot resume: the checkpoint's training state")
    assert message in err
    assert (listing(run), snapshot(str(run))) == before                # not even a lock file


def test_the_training_state_check_names_the_fault_and_passes_a_real_run(trained_run, tmp_path):
    ckpt = checkpoint.load(trained_run)
    cfg = checkpoint.config_of(ckpt)
    check_resume(ckpt, cfg)                                            # the control: a real run resumes
    for case, (craft, message) in STATES.items():
        bad = copy.deepcopy(ckpt)
        craft(bad)
        with pytest.raises(UserError) as refusal:
            check_resume(bad, cfg)
        assert message in str(refusal.value), (case, str(refusal.value))


# ---------------------------------------------------------------- 3. folders that are not what they seem

@pytest.mark.parametrize("name", ["log.csv", "ckpt_step5.pt", "ckpt.pt"])
def test_a_folder_where_a_run_keeps_a_file_is_refused(trained_run, tmp_path, capsys, name):
    run = copy_run(trained_run, tmp_path)
    path = os.path.join(run, name)
    if os.path.exists(path):
        os.remove(path)
    os.mkdir(path)
    before = listing(run)
    refused(train_main, ["--run", run, "--resume", "--steps", "12", "--no-progress"], capsys,
            f"{name} is a folder, where a run keeps a file")
    fresh = tmp_path / "fresh"
    (fresh / name).mkdir(parents=True)                                 # a new run there would fail at its first save
    refused(train_main, ["--run", str(fresh), *TINY_TRAIN_FLAGS, "--steps", "2"], capsys, "is a folder")
    assert listing(run) == before and listing(fresh) == [name]


@pytest.mark.parametrize("deep", [["d" * 200] * 25, ["ok", "x" * 300]])     # beyond PATH_MAX; beyond NAME_MAX
def test_a_path_longer_than_the_os_allows_leaves_no_folder_behind(trained_run, tmp_path, capsys, deep):
    (tmp_path / "kept").mkdir()
    target = str(tmp_path.joinpath(*deep))
    before = listing(tmp_path)
    refused(train_main, ["--run", target, *TINY_TRAIN_FLAGS, "--steps", "2"], capsys, "File name too long")
    refused(sample_main, ["--run", trained_run, *SAMPLE, "--out", target], capsys, "File name too long")
    assert listing(tmp_path) == before


# ---------------------------------------------------------------- 4. faults while writing

class FullDisk:
    """A temp file on a disk that fills after `room` bytes: write raises ENOSPC, as the kernel does."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_full_disk_in_the_middle_of_a_checkpoint_is_one_line_and_the_last_one_stays(tmp_path, capsys,
                                                                                      monkeypatch, no_grid):
    """The checkpoint of step 5 fits, the one of step 10 does not: torch's zip writer turns the write's ENOSPC
    into its own RuntimeError, which is still reported as the disk's reason."""
    run, real_fdopen, checkpoints = tmp_path / "run", os.fdopen, []

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith("ckpt.pt."):
            checkpoints.append(fd)
            if len(checkpoints) == 2:
                return FullDisk(f, room=2 ** 20)
        return f
    monkeypatch.setattr(os, "fdopen", fdopen)
    err = refused(train_main, ["--run", str(run), *TINY_TRAIN_FLAGS, "--steps", "10"], capsys,
                  "(No space left on device)")
    assert "stopped at step 10" in err and "Last good checkpoint: step 5" in err
    assert checkpoint.load(str(run))["step"] == 5 and stray_files(str(run)) == []


TERM_MID_WRITE = """
import os, signal, sys
real_fsync = os.fsync
def fsync(fd):                     # the first output's bytes are in its temp file, not yet renamed: SIGTERM now
    os.fsync = real_fsync
    os.kill(os.getpid(), signal.SIGTERM)
    real_fsync(fd)
os.fsync = fsync
sys.argv[0] = "sample.py"
from toydiff.sample_cli import main
main()
"""


def test_sigterm_in_the_middle_of_a_figure_leaves_no_temp_file(trained_run, tmp_path):
    out = tmp_path / "figs"
    proc = subprocess.run([sys.executable, "-c", TERM_MID_WRITE, "--run", trained_run, "--figures", "trajectories",
                           "--sample-steps", "2", "--cloud-n", "5", "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("interrupted (SIGTERM)") and "Traceback" not in proc.stderr
    assert listing(out) == [".lock"]                                   # no figure, no *.tmp


def test_a_second_sample_into_the_same_folder_is_refused_while_the_first_writes(trained_run, tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, "sample.py"), "--run", trained_run, "--n", "300",
                              "--sampler", "ddpm", "--out", str(out)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        lock = out / ".lock"
        wait_until(lambda: lock.exists() and lock.read_text() == str(first.pid), first)   # it holds the folder
        one_error_line(python("sample.py", "--run", trained_run, *SAMPLE, "--out", str(out)),
                       "is in use by another process")
        assert first.poll() is None and not (out / "samples.npz").exists()     # the second wrote nothing
    finally:
        first.kill()
        first.communicate(timeout=60)


# ---------------------------------------------------------------- 5. shapes the studies did not expect

@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """An MNIST-shaped run (28x28, 10 classes) whose training split holds 4 images, of classes 0..3 only."""
    root = tmp_path_factory.mktemp("mnist")
    mnist_files(root / "data" / "MNIST" / "raw")
    run = str(root / "run")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(train_cli, "_final_grid", lambda *args, **kwargs: None)
        train_main(["--dataset", "mnist", "--data-dir", str(root / "data"), "--run", run, "--steps", "2",
                    "--width", "8", "--channel-mult", "1,2", "--num-res-blocks", "1", "--timesteps", "20",
                    "--batch-size", "4", "--no-progress"])
    return run


def test_an_mnist_shaped_run_refuses_figures_of_a_class_it_never_saw_and_evaluates_it(mnist_run, tmp_path, capsys):
    out = tmp_path / "figs"
    refused(sample_main, ["--run", mnist_run, "--figures", "all", "--class", "9", "--negative", "0",
                          "--sample-steps", "2", "--out", str(out)], capsys,
            "class 9 has no images in the mnist training split")
    assert not out.exists()
    sample_main(["--run", mnist_run, "--class", "9", "--eval", *SAMPLE, "--out", str(tmp_path / "s")])
    metrics = json.load(open(tmp_path / "s" / "metrics.json"))
    assert metrics["real"]["n"] == 0 and metrics["real"]["fid"] is None    # no real 9 to compare with: no number
    assert metrics["sets"]["cfg"]["n"] == 1


def test_a_group_norm_over_one_value_is_refused_as_a_shape(tmp_path, capsys):
    run = tmp_path / "run"
    refused(train_main, [*TINY_TRAIN_FLAGS, "--run", str(run), "--steps", "2", "--patch", "8", "--width", "8",
                         "--channel-mult", "1"], capsys, "--patch 8 leaves 1x1 pixels at the lowest level")
    assert not run.exists()


@pytest.mark.parametrize("key, rows", [("scales", 2), ("seeds", 2), ("negative_weights", 2)])
def test_an_npz_with_a_short_column_is_refused_by_the_reader(trained_run, tmp_path, capsys, key, rows):
    out = tmp_path / "s"
    sample_main(["--run", trained_run, *SAMPLE, "--out", str(out)])
    arrays = dict(np.load(out / "samples.npz"))
    arrays[key] = arrays[key][:rows]
    np.savez(tmp_path / "short.npz", **arrays)
    refused(sample_main, ["--run", trained_run, "--eval", str(tmp_path / "short.npz")], capsys,
            f"{key} must be")
    assert not (tmp_path / "metrics.json").exists()


# ---------------------------------------------------------------- 6. the benchmarks check before they write

@pytest.mark.parametrize("argv, message", [
    (["removal", "--classes", "99"], "negative classes must lie in 0..9"),
    (["removal", "--lam", "nan"], "lambda must be a finite number"),
    (["removal", "--ceiling", "0.5"], "must be >= 1, got 0.5"), (["removal", "--eta", "2"], "eta must lie in [0, 1]"),
    (["time-to-quality", "--target", "nan"], "--target is a judge accuracy in (0, 1]"),
    (["train", "--json", "MISSING/bench.json"], "does not exist"),
    (["train", "--set", "train.nonsense=1"], "expected section.field=value"),
    (["train", "--set", "train.steps=many"], "'many' is not a valid int"),
    (["samplers", "--set", "train.steps=5"], "samplers use a trained run's own config"),
])
def test_the_benchmarks_refuse_before_writing_or_working(trained_run, tmp_path, capsys, argv, message):
    from benchmarks.bench import main as bench_main

    run = copy_run(trained_run, tmp_path)
    before = listing(str(tmp_path))
    argv = [a.replace("MISSING", str(tmp_path / "missing")) for a in argv]
    if "--json" not in argv:
        argv += ["--json", str(tmp_path / "bench.json")]
    refused(bench_main, [*argv, "--run", run, "--n", "1"], capsys, message)
    assert listing(str(tmp_path)) == before                            # no judge.pt cached, no json
    assert capsys.readouterr().out == ""


@NO_GPU
def test_the_gpu_check_without_cuda_writes_and_trains_nothing(tmp_path, capsys):
    from benchmarks.gpu import main as gpu_main

    refused(gpu_main, ["--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out")], capsys,
            "the GPU check measures a CUDA GPU")
    assert listing(str(tmp_path)) == []


# ---------------------------------------------------------------- 7. output streams

def test_stdout_closed_early_finishes_the_files_quietly(trained_run, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "sample.py"), "--run", trained_run, *SAMPLE,
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    assert proc.stdout.readline().startswith("wrote")                  # `| head -n 1`: a line read, then gone
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0 and err == "", err
    assert np.load(out / "samples.npz")["images"].shape[0] == 30


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stdout_on_a_full_device_finishes_the_files_quietly(trained_run, tmp_path):
    out = tmp_path / "out"
    with open("/dev/full", "w") as full:
        proc = python("sample.py", "--run", trained_run, *SAMPLE, "--out", str(out), stdout=full)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert np.load(out / "samples.npz")["images"].shape[0] == 30


def test_under_torchrun_one_line_says_sampling_is_a_single_process(trained_run, tmp_path):
    """Two ranks, one `error:` line (rank 0 speaks for the job); torchrun's own failure report follows it."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
              os.path.join(ROOT, "sample.py"), "--ckpt", os.path.join(trained_run, "ckpt.pt"),
              "--out", str(tmp_path / "out")]
    proc = subprocess.run(launch, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "sample.py is a single process" in errors[0], proc.stderr[-2000:]
    assert not (tmp_path / "out").exists()


def test_a_refusal_on_another_rank_stays_silent(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--run", str(tmp_path / "r"), "--width", "-3"])
    assert exit_info.value.code == 2 and capsys.readouterr().err == ""
