"""Hostile and careless input, class by class: each case is one line `error: ...`, exit 2, nothing written or lost.
The lock, SIGTERM, Ctrl-C and log-repair cases run real processes."""

import builtins
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from toydiff import checkpoint, training
from toydiff.errors import UserError
from toydiff.files import FILE_MODE
from toydiff.guidance import normalise_weights
from toydiff.sample_cli import main as sample_main
from toydiff.train_cli import main as train_main
from toydiff.training import step_generator

from conftest import TINY_TRAIN_FLAGS
from test_bad_input import mnist_files, refused, snapshot
from test_data import write_idx
from test_faults import ROOT, logged_steps, no_grid, start_train, stray_files, wait_until  # noqa: F401
from test_judge import digits_judge  # noqa: F401
from test_metrics import eval_run, write  # noqa: F401


def copy_run(trained_run, tmp_path, name="run"):
    run = tmp_path / name
    shutil.copytree(trained_run, run)
    return str(run)


def crafted(trained_run, tmp_path, **changes):
    """A copy of the tiny run whose checkpoint has `changes` applied ({"model.width": 32.0, "version": -7, ...})."""
    run = tmp_path / "crafted"
    run.mkdir()
    ckpt = torch.load(os.path.join(trained_run, "ckpt.pt"), weights_only=True)
    for key, value in changes.items():
        section, _, field = key.rpartition(".")
        (ckpt["config"][section] if section else ckpt)[field] = value
    torch.save(ckpt, run / "ckpt.pt")
    return str(run)


# ---------------------------------------------------------------- 1. values that passed the checks, then crashed

@pytest.mark.parametrize("seed", [20240101, -5, 2 ** 63 - 1])
def test_any_64_bit_training_seed_trains(tmp_path, no_grid, seed):
    run = str(tmp_path / "run")
    train_main(["--run", run, *TINY_TRAIN_FLAGS, "--steps", "2", "--seed", str(seed)])
    assert checkpoint.load(run)["step"] == 2


def test_big_seeds_give_distinct_noise_per_step_and_rank():
    draws = {tuple(torch.randn(4, generator=step_generator(seed, rank, step, torch.device("cpu"))).tolist())
             for seed in (20240101, 2 ** 62) for rank in (0, 1) for step in (0, 1)}
    assert len(draws) == 8
    small = step_generator(3, 0, 7, torch.device("cpu")).initial_seed()
    assert small == (3 * 256) * 2 ** 32 + 7                     # small seeds keep their old stream (resume)


def test_a_seed_near_2_63_samples_and_one_beyond_is_one_line(trained_run, tmp_path, capsys):
    sample_main(["--run", trained_run, "--n", "1", "--sample-steps", "2", "--seed", str(2 ** 63 - 10),
                 "--out", str(tmp_path / "s")])                      # 10 samples: seeds up to 2^63 - 1
    assert np.load(tmp_path / "s" / "samples.npz")["seeds"].max() == 2 ** 63 - 1
    refused(sample_main, ["--run", trained_run, "--n", "1", "--seed", str(2 ** 64 - 3), "--out",
                          str(tmp_path / "t")], capsys, "must fit in 64 bits")
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("argv, message", [
    (["--width", "0"], "--width must lie in 1..1024"), (["--width", "-8"], "--width must lie in 1..1024"),
    (["--channel-mult", "0"], "--channel-mult must be 1 to 8 multipliers"),
    (["--channel-mult=-1,2"], "--channel-mult must be 1 to 8 multipliers"),
    (["--dropout", "1.5"], "--dropout must lie in [0, 1)"), (["--dropout", "-0.1"], "--dropout"),
    (["--dropout", "nan"], "--dropout"), (["--device", "meta"], "unknown device 'meta'"),
    (["--device", "xpu"], "unknown device 'xpu'"), (["--seed", str(2 ** 63)], "--seed must fit in 64 bits"),
    (["--run", ""], "expected a path"), (["--lr", "inf"], "--lr"), (["--timesteps", str(10 ** 10)], "--timesteps"),
    (["--amp", "fp16", "--device", "cpu"], "fp16 needs a CUDA device"),
    (["--batch-size", "5000"], "fewer than one batch of 5000"),
])
def test_train_values_out_of_range_are_refused_before_the_run_folder_exists(tmp_path, capsys, argv, message):
    run = tmp_path / "run"
    argv = [a if a != "RUN" else str(run) for a in argv]
    refused(train_main, [*TINY_TRAIN_FLAGS, "--run", str(run), "--steps", "2", *argv], capsys, message)
    assert not run.exists()


@pytest.mark.parametrize("argv, message", [
    (["--eta", "1e300"], "eta must lie in [0, 1]"), (["--eta", "1e10"], "eta must lie in [0, 1]"),
    (["--n", "1000000000"], "must lie in 1..100000"), (["--scale", "1e300"], "guidance scale s"),
    (["--negative", "8:1e30", "--negative", "5:1e-30"], "rounds to 0"),
    (["--interval", "5000:9000"], "must lie within the model's timesteps 0..49"),
    (["--ckpt", ""], "expected a path"), (["--device", "meta"], "unknown device"),
    (["--batch-size", str(2 ** 20)], "batch size must lie in"),
])
def test_sample_values_out_of_range_are_refused_before_writing(trained_run, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    before = snapshot(trained_run)
    refused(sample_main, ["--run", trained_run, "--out", str(out), *argv], capsys, message)
    assert not out.exists() and snapshot(trained_run) == before


def test_images_and_labels_of_different_lengths_are_one_line(tmp_path, capsys):
    data = tmp_path / "data"
    raw = data / "MNIST" / "raw"
    rng = np.random.default_rng(0)
    write_idx(raw, "train", rng.integers(0, 256, (64, 28, 28)), np.arange(64) % 10)
    write_idx(raw, "t10k", rng.integers(0, 256, (2, 28, 28)), np.arange(2))
    write_idx(tmp_path / "ten", "train", rng.integers(0, 256, (10, 28, 28)), np.arange(10))
    shutil.copy(tmp_path / "ten" / "train-labels-idx1-ubyte", raw / "train-labels-idx1-ubyte")   # 10 labels
    refused(train_main, ["--dataset", "mnist", "--data-dir", str(data), "--run", str(tmp_path / "r")], capsys,
            "64 images but 10 labels")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- 2. finite in Python, not in float32

def test_weights_are_normalised_in_float64():
    torch.testing.assert_close(normalise_weights([3e38, 3e38]), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(normalise_weights([1e300]), torch.tensor([1.0]))
    torch.testing.assert_close(normalise_weights([1e-50]), torch.tensor([1.0]))
    with pytest.raises(UserError, match="rounds to 0"):
        normalise_weights([1.0, 1e-60])


def test_huge_equal_weights_sample_and_are_recorded_as_halves(trained_run, tmp_path):
    out = tmp_path / "s"
    sample_main(["--run", trained_run, "--class", "3", "--negative", "8:3e38", "--negative", "5:3e38", "--n", "1",
                 "--sample-steps", "2", "--out", str(out)])
    d = np.load(out / "samples.npz")
    np.testing.assert_allclose(d["negative_weights"][d["sets"] == "negative"], [[0.5, 0.5]])
    assert np.isfinite(d["images"]).all()


# ---------------------------------------------------------------- 3. meaningless input accepted silently

def test_a_checkpoint_with_nan_weights_is_refused(trained_run, tmp_path, capsys):
    run = tmp_path / "nan"
    run.mkdir()
    ckpt = torch.load(os.path.join(trained_run, "ckpt.pt"), weights_only=True)
    name = next(iter(ckpt["ema"]))
    ckpt["ema"][name] = torch.full_like(ckpt["ema"][name], float("nan"))
    torch.save(ckpt, run / "ckpt.pt")
    refused(sample_main, ["--run", str(run), "--out", str(tmp_path / "o")], capsys, "NaN or infinite")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("version, message", [
    (-7, "format version -7, which no toydiff writes"), (0, "format version 0, which no toydiff writes"),
    ("1", "format version '1', which no toydiff writes"), (True, "format version True"),
    (2, "newer than this toydiff reads"),
])
def test_format_versions_are_checked_honestly(trained_run, tmp_path, capsys, version, message):
    run = crafted(trained_run, tmp_path, version=version)
    refused(sample_main, ["--run", run, "--out", str(tmp_path / "o")], capsys, message)


def test_resume_with_steps_at_or_below_the_run_trains_nothing_and_says_so(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    before = snapshot(run)
    for steps in ("10", "3"):                                     # the tiny run is at step 10
        refused(train_main, ["--run", run, "--resume", "--steps", steps, "--no-progress"], capsys,
                "leaves nothing to train")
    assert snapshot(run) == before


def test_eval_of_an_npz_without_images_is_refused(eval_run, tmp_path, capsys):
    empty = write(tmp_path / "empty.npz", images=np.zeros((0, 1, 8, 8), np.float32),
                  labels=np.zeros(0, np.int64), negatives=np.zeros((0, 1), np.int64), sets=np.array([], str))
    refused(sample_main, ["--run", eval_run, "--eval", empty], capsys, "holds no images")
    assert not (tmp_path / "metrics.json").exists()


# ---------------------------------------------------------------- 4. a crafted checkpoint config

@pytest.mark.parametrize("changes, message", [
    ({"model.groups": 0}, "groups must lie in 1..1024"), ({"model.width": 32.0}, "model.width must be of type int"),
    ({"model.dropout": 5.0}, "dropout must lie in [0, 1)"), ({"model.image_size": 8.0}, "must be of type int"),
    ({"model.num_classes": 10 ** 9}, "num_classes must lie in 1..100000"),
    ({"diffusion.timesteps": 10 ** 10}, "timesteps must lie in 2..100000"),
    ({"model.channel_mult": [1, True]}, "channel_mult must be of type"), ({"train.seed": "0"}, "train.seed"),
    ({"model.attention": 1}, "model.attention must be of type bool"),
])
def test_a_crafted_config_is_refused_before_anything_is_built(trained_run, tmp_path, capsys, changes, message):
    run = crafted(trained_run, tmp_path, **changes)
    before = snapshot(tmp_path)
    refused(sample_main, ["--run", run, "--out", str(tmp_path / "o")], capsys, message)
    refused(train_main, ["--run", run, "--resume", "--no-progress"], capsys, message)
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- 5. run-folder ownership

def test_a_folder_with_only_kept_checkpoints_is_a_run_and_resumes_from_the_newest(trained_run, tmp_path, capsys,
                                                                                  no_grid):
    run = copy_run(trained_run, tmp_path)
    os.replace(os.path.join(run, "ckpt.pt"), os.path.join(run, "ckpt_step10.pt"))   # as after a kill -9
    before = snapshot(run)
    refused(train_main, ["--run", run, *TINY_TRAIN_FLAGS, "--steps", "2"], capsys, "already holds a run")
    assert snapshot(run) == before                                          # nothing cleared
    train_main(["--run", run, "--resume", "--steps", "15", "--no-progress"])
    assert "resuming from the newest kept checkpoint" in capsys.readouterr().err
    assert checkpoint.load(run)["step"] == 15 and os.path.isfile(os.path.join(run, "ckpt_step10.pt"))


def test_a_folder_holding_only_a_log_is_a_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text("step,loss,lr,seconds\n5,0.5,0.001,1.0\n")
    refused(train_main, ["--run", str(run), *TINY_TRAIN_FLAGS, "--steps", "2"], capsys, "already holds a run")
    refused(train_main, ["--run", str(run), "--resume"], capsys, "pass --overwrite to start a new run there")
    assert (run / "log.csv").read_text().endswith("5,0.5,0.001,1.0\n")


def test_overwrite_removes_the_old_run_only_after_the_first_save(trained_run, tmp_path, monkeypatch, no_grid):
    run = copy_run(trained_run, tmp_path)
    shutil.copy(os.path.join(run, "ckpt.pt"), os.path.join(run, "ckpt_step5.pt"))
    before = snapshot(run)

    def crash(*args, **kwargs):
        raise RuntimeError("the machine went down before the first checkpoint")
    with monkeypatch.context() as m:
        m.setattr(training, "diffusion_loss", crash)
        with pytest.raises(RuntimeError):
            train_main(["--run", run, "--overwrite", *TINY_TRAIN_FLAGS, "--steps", "4", "--seed", "1"])
    assert snapshot(run) == before                                          # the old run is whole
    train_main(["--run", run, "--overwrite", *TINY_TRAIN_FLAGS, "--steps", "4", "--seed", "1"])
    assert not os.path.exists(os.path.join(run, "ckpt_step5.pt"))           # gone once the new run saved
    assert checkpoint.load(run)["step"] == 4 and logged_steps(run) == [4]


def test_a_second_training_on_a_folder_is_refused_and_a_dead_lock_does_not_block(tmp_path):
    run = str(tmp_path / "run")
    first = start_train(["--run", run, *TINY_TRAIN_FLAGS, "--steps", "100000"])
    wait_until(lambda: logged_steps(run), first)
    second = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--run", run, "--resume",
                             "--no-progress"], capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "in use by another process" in second.stderr, second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    first.send_signal(signal.SIGKILL)                                       # dies holding the lock
    first.communicate(timeout=60)
    at = checkpoint.load(run)["step"]
    third = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--run", run, "--resume",
                            "--steps", str(at + 5), "--no-progress", "--grid-scale", "2"],
                           capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert checkpoint.load(run)["step"] == at + 5


# ---------------------------------------------------------------- 6. writing outputs

def test_a_link_planted_at_an_output_is_replaced_not_followed(trained_run, tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("precious")
    for name in ("samples.npz", "samples.npz.tmp.npz", "grid_cfg.png"):
        os.symlink(victim, out / name)
    sample_main(["--run", trained_run, "--n", "1", "--sample-steps", "2", "--out", str(out)])
    assert victim.read_text() == "precious"
    assert not os.path.islink(out / "samples.npz") and np.load(out / "samples.npz")["images"].size


@pytest.mark.parametrize("target", ["grid_cfg.png", "samples.npz", "metrics.json"])
def test_a_full_disk_while_writing_an_output_is_one_line_and_leaves_nothing_partial(eval_run, tmp_path, capsys,
                                                                                    monkeypatch, target):
    out = tmp_path / "out"
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(target):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    refused(sample_main, ["--run", eval_run, "--n", "1", "--sample-steps", "2", "--out", str(out), "--eval"],
            capsys, f"could not write {out / target} (No space left on device)")
    assert not (out / target).exists() and stray_files(str(out)) == []


def test_the_final_training_grid_on_a_full_disk_is_one_line_and_the_checkpoint_stays(tmp_path, capsys,
                                                                                     monkeypatch):
    real_replace, run = os.replace, tmp_path / "run"
    monkeypatch.setattr(os, "replace", lambda s, d: (_ for _ in ()).throw(OSError(28, "No space left on device"))
                        if str(d).endswith(".png") else real_replace(s, d))
    refused(train_main, ["--run", str(run), *TINY_TRAIN_FLAGS, "--steps", "2"], capsys, "No space left on device")
    assert checkpoint.load(str(run))["step"] == 2 and stray_files(str(run)) == []


def test_a_folder_where_an_output_should_go_is_one_line(trained_run, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "grid_none.png").mkdir(parents=True)
    refused(sample_main, ["--run", trained_run, "--n", "1", "--sample-steps", "2", "--out", str(out)], capsys,
            "a folder is in the way")


def test_outputs_respect_the_umask(trained_run):
    for name in ("ckpt.pt", "log.csv", "samples_cfg2.png"):
        assert os.stat(os.path.join(trained_run, name)).st_mode & 0o777 == FILE_MODE, name


# ---------------------------------------------------------------- 7. a damaged log.csv

def test_resume_repairs_a_damaged_log_in_a_real_process(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path)
    with open(os.path.join(run, "log.csv"), "ab") as f:
        f.write(b"garbage,line\n7,not-a-loss,1,2\n" + b"\x00" * 40)           # + a power-loss NUL tail
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--run", run, "--resume", "--steps", "15",
                           "--no-progress", "--grid-scale", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "dropped 3 damaged line(s)" in notes[0], proc.stderr
    assert logged_steps(run) == [5, 10, 15]
    assert b"\x00" not in open(os.path.join(run, "log.csv"), "rb").read()


# ---------------------------------------------------------------- 8. signals

def test_sigterm_saves_and_says_how_to_resume(tmp_path):
    run = str(tmp_path / "run")
    proc = start_train(["--run", run, *TINY_TRAIN_FLAGS, "--steps", "100000"])
    wait_until(lambda: logged_steps(run), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and "interrupted by SIGTERM" in err and "--resume" in err, err
    assert checkpoint.load(run)["step"] >= 5 and stray_files(run) == []


def test_ctrl_c_while_sampling_is_one_line_and_exit_130(trained_run, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "sample.py"), "--run", trained_run, "--n", "300",
                             "--sampler", "ddpm", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().startswith("wrote")                 # the first set is done, two are to come
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err and "Traceback" not in err, err
    assert not (out / "samples.npz").exists() and stray_files(str(out)) == []


def test_a_second_ctrl_c_during_a_save_lets_the_save_finish(tmp_path, monkeypatch):
    from conftest import tiny_config
    from test_training import few_digits

    real_save = checkpoint.save

    def interrupted_save(payload, path):
        os.kill(os.getpid(), signal.SIGINT)             # the first Ctrl-C: stop after this step
        os.kill(os.getpid(), signal.SIGINT)             # the second, while the checkpoint is being written
        real_save(payload, path)
    monkeypatch.setattr(checkpoint, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        training.train(tiny_config(steps=10, ckpt_every=5), str(tmp_path), data=few_digits(),
                       device=torch.device("cpu"), progress=False)
    assert checkpoint.load(str(tmp_path))["step"] == 5 and stray_files(str(tmp_path)) == []


# ---------------------------------------------------------------- 9. messages that mislead

def test_an_unreadable_checkpoint_says_why(trained_run, tmp_path, capsys, monkeypatch):
    path = os.path.join(trained_run, "ckpt.pt")
    real_open = builtins.open

    def no_permission(file, *args, **kwargs):
        if str(file) == path:
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", no_permission)
    refused(sample_main, ["--ckpt", path, "--out", str(tmp_path / "o")], capsys, "(Permission denied)")


@pytest.mark.parametrize("content", [os.urandom(300), json.dumps({"model": 1}).encode(), b"\x80\x04K\x01."])
def test_random_bytes_json_or_a_raw_pickle_are_not_torch_files(tmp_path, capsys, content):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(content)
    err = refused(sample_main, ["--ckpt", str(path), "--out", str(tmp_path / "o")], capsys, "not a torch zip archive")
    assert "pickled objects" not in err and "Warning" not in err


def test_a_data_dir_that_is_a_file_says_so(tmp_path, capsys):
    blob = tmp_path / "mnist.tar"
    blob.write_text("not a folder")
    refused(train_main, ["--dataset", "mnist", "--data-dir", str(blob), "--run", str(tmp_path / "r")], capsys,
            "is a file, not a folder")


def test_an_offline_download_does_not_advise_downloading(tmp_path, capsys, monkeypatch):
    from torchvision import datasets

    def offline(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")
    monkeypatch.setattr(datasets.MNIST, "download", offline)
    err = refused(train_main, ["--dataset", "mnist", "--data-dir", str(tmp_path / "d"), "--download",
                               "--run", str(tmp_path / "r")], capsys, "check the network")
    assert "pass --download" not in err


def test_a_bad_judge_file_says_it_will_be_retrained(eval_run, capsys):
    with open(os.path.join(eval_run, "judge.pt"), "wb") as f:
        f.write(b"garbage")
    refused(sample_main, ["--run", eval_run, "--eval", "--n", "1", "--sample-steps", "2"], capsys,
            "delete it and the judge is retrained")


def test_mnist_files_still_load(tmp_path):
    """The control for the MNIST cases above: the tiny files in torchvision's layout do load."""
    mnist_files(tmp_path / "MNIST" / "raw")
    from toydiff.data import load_dataset
    assert len(load_dataset("mnist", str(tmp_path))[0]) == 4
