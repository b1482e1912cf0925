"""Every bad input is one line `error: ...` naming the problem and the fix, exit code 2, no traceback, and
nothing written. Cases already in tests/test_cli.py (unknown dataset, missing --data-dir, class/negative out of
range, weight <= 0, non-finite scale, steps/n/batch < 1, DDIM steps > T, missing/foreign checkpoints) are not
repeated here; this file adds the rest, and shows that a pickled checkpoint is refused without being executed.
"""

import ast
import glob
import os

import numpy as np
import pytest
import torch

from toydiff import checkpoint
from toydiff.sample_cli import main as sample_main
from toydiff.train_cli import main as train_main

from conftest import TINY_TRAIN_FLAGS
from test_data import write_idx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def refused(main, argv, capsys, message):
    """Run a CLI main; assert exit 2 and one line `error: ...` containing `message`; return the line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert message in err, err
    return err


def snapshot(folder):
    """Sizes and mtimes of every file under `folder`: equal snapshots = nothing was written."""
    paths = glob.glob(os.path.join(folder, "**"), recursive=True)
    return {p: (os.path.getsize(p), os.path.getmtime(p)) for p in paths if os.path.isfile(p)}


# ---------------------------------------------------------------- train.py

def mnist_files(folder):
    rng = np.random.default_rng(0)
    write_idx(folder, "train", rng.integers(0, 256, (4, 28, 28)), np.arange(4))
    write_idx(folder, "t10k", rng.integers(0, 256, (2, 28, 28)), np.arange(2))


@pytest.mark.parametrize("case, message", [
    ("empty-data-dir", "not found or corrupted"),
    ("corrupt-data-dir", "corrupt"),
    ("wrong-dataset-files", "not found or corrupted"),
    ("too-many-levels", "image_size 8 is not divisible by 16"),
    ("width-vs-groups", "GroupNorm groups"),
    ("run-under-a-file", "cannot write to run folder"),
    ("run-is-a-file", "is a file, not a folder"),
    pytest.param("no-gpu", "CUDA is not available", marks=NO_GPU),
])
def test_train_bad_input(tmp_path, capsys, case, message):
    run, data = tmp_path / "run", tmp_path / "data"
    data.mkdir()
    if case == "corrupt-data-dir":
        mnist_files(data / "MNIST" / "raw")
        (data / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03 not an idx file")
    if case == "wrong-dataset-files":                   # MNIST's files where Fashion-MNIST's were asked for
        mnist_files(data / "MNIST" / "raw")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    argv = {"empty-data-dir": ["--dataset", "mnist", "--data-dir", str(data)],
            "corrupt-data-dir": ["--dataset", "mnist", "--data-dir", str(data)],
            "wrong-dataset-files": ["--dataset", "fashion-mnist", "--data-dir", str(data)],
            "too-many-levels": ["--channel-mult", "1,2,2,2,2"],
            "width-vs-groups": ["--width", "12"],
            "run-under-a-file": ["--run", str(blocker / "run")],      # ENOTDIR: not writable even as root
            "run-is-a-file": ["--run", str(blocker)],
            "no-gpu": ["--device", "cuda"]}[case]
    before = snapshot(tmp_path)
    err = refused(train_main, ["--run", str(run), *TINY_TRAIN_FLAGS, "--steps", "2", *argv], capsys, message)
    if "data-dir" in case or case == "wrong-dataset-files":
        assert "--download" in err                                  # the fix is named
    assert not run.exists() and snapshot(tmp_path) == before


# ---------------------------------------------------------------- sample.py

def test_sample_bad_input(trained_run, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = tmp_path / "out"
    before = snapshot(trained_run)
    for argv, message in [
        (["--negative", "3:nan"], "weights must be finite and > 0"),
        (["--negative", "3:inf"], "weights must be finite and > 0"),
        (["--batch-size", "0"], "batch size must lie in 1..65536"),
        (["--eta", "-1"], "eta must lie in [0, 1]"),
        (["--eta", "1e10"], "eta must lie in [0, 1]"),
        (["--sampler", "ddpm", "--eta", "1"], "eta 1 applies to DDIM only"),
        (["--sampler", "ddpm", "--sample-steps", "51"], "the model's T is 50"),     # DDIM: tests/test_cli.py
        (["--out", str(blocker / "out")], "cannot write to output folder"),          # ENOTDIR, even as root
        *([(["--device", "cuda"], "CUDA is not available")] if not torch.cuda.is_available() else []),
    ]:
        refused(sample_main, ["--run", trained_run, "--out", str(out), "--n", "1", *argv], capsys, message)
    assert not out.exists() and snapshot(trained_run) == before


def test_a_negative_equal_to_the_positive_class_warns_and_leaves_the_row_unguided(trained_run, tmp_path, capsys):
    """Allowed, with one warning line: eps_ref = eps_pos, so eps = eps_pos whatever s is."""
    out = tmp_path / "out"
    sample_main(["--run", trained_run, "--class", "3", "--negative", "3", "--n", "2", "--sample-steps", "3",
                 "--scale", "5", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("warning:") and "equals a positive class" in err, err
    d = np.load(out / "samples.npz")
    np.testing.assert_allclose(d["images"][d["sets"] == "negative"], d["images"][d["sets"] == "none"], atol=1e-5)


# ---------------------------------------------------------------- checkpoints

def damaged(good: dict, case: str):
    """A copy of a good checkpoint dict (or raw bytes) with one thing wrong."""
    ckpt = {k: v for k, v in good.items()}
    ckpt["config"] = {section: dict(values) for section, values in good["config"].items()}
    if case == "newer-version":
        ckpt["version"] = checkpoint.FORMAT_VERSION + 1
    elif case == "no-version":
        del ckpt["version"]
    elif case == "other-format":
        ckpt["format"] = "someone-else"
    elif case == "not-a-dict":
        return [torch.zeros(3)]
    elif case == "missing-ema":
        del ckpt["ema"]
    elif case == "bad-step":
        ckpt["step"] = "ten"
    elif case == "unknown-config-key":
        ckpt["config"]["model"]["colour"] = "blue"
    elif case == "malformed-config":
        ckpt["config"] = "width=16"
    elif case == "wrong-config-type":
        ckpt["config"]["model"]["width"] = "wide"
    elif case == "image-size":                                   # a size the UNet cannot downsample
        ckpt["config"]["model"]["image_size"] = 7
    elif case == "weights-vs-config":
        ckpt["config"]["model"]["width"] = 32
    return ckpt


CKPT_CASES = [("truncated", "not a torch zip archive"), ("empty", "not a torch zip archive"),
              ("newer-version", "newer than this toydiff reads"), ("no-version", "format version None"),
              ("other-format", "not a toydiff checkpoint"), ("not-a-dict", "not a toydiff checkpoint"),
              ("missing-ema", "missing 'ema'"), ("bad-step", "not a count of steps"),
              ("unknown-config-key", "unknown keys ['colour']"),
              ("malformed-config", "config is damaged: config must be a dict"),
              ("wrong-config-type", "model.width must be of type int"),
              ("image-size", "image_size 7 is not divisible by 2"), ("weights-vs-config", "do not match")]


def write_damaged(trained_run, path, case):
    good_path = os.path.join(trained_run, "ckpt.pt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if case in ("truncated", "empty"):
        data = open(good_path, "rb").read()
        open(path, "wb").write(data[:len(data) // 2] if case == "truncated" else b"")
    else:
        torch.save(damaged(torch.load(good_path, weights_only=True), case), path)


@pytest.mark.parametrize("case, message", CKPT_CASES, ids=[c for c, _ in CKPT_CASES])
def test_a_bad_checkpoint_is_refused_by_sample_and_resume(trained_run, tmp_path, capsys, case, message):
    run, out = tmp_path / "run", tmp_path / "out"
    write_damaged(trained_run, str(run / "ckpt.pt"), case)
    before = snapshot(tmp_path)
    refused(sample_main, ["--ckpt", str(run / "ckpt.pt"), "--out", str(out)], capsys, message)
    if case != "weights-vs-config":          # training rebuilds the model from the stored config: it fits
        refused(train_main, ["--run", str(run), "--resume", "--no-progress"], capsys, message)
    assert snapshot(tmp_path) == before


def test_a_checkpoint_without_training_state_samples_but_does_not_resume(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    ckpt = torch.load(os.path.join(trained_run, "ckpt.pt"), weights_only=True)
    del ckpt["optimizer"]
    torch.save(ckpt, run / "ckpt.pt")
    before = snapshot(tmp_path)
    refused(train_main, ["--run", str(run), "--resume", "--no-progress"], capsys, "cannot resume: the checkpoint's training state")
    assert snapshot(tmp_path) == before
    checkpoint.load_run(str(run / "ckpt.pt"))                              # still fine for sampling


class CreatesMarker:
    """Unpickling this calls open(marker, "w"): pickle's code-execution door, used here harmlessly."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_pickled_checkpoint_is_refused_and_never_executed(trained_run, tmp_path, capsys):
    marker, run, out = tmp_path / "code-ran", tmp_path / "run", tmp_path / "out"
    run.mkdir()
    good = torch.load(os.path.join(trained_run, "ckpt.pt"), weights_only=True)
    torch.save({**good, "note": CreatesMarker(str(marker))}, run / "ckpt.pt")
    err = refused(sample_main, ["--ckpt", str(run / "ckpt.pt"), "--out", str(out)], capsys, "refusing")
    assert "io.open" in err and "weights_only=False" not in err and "\x1b" not in err
    refused(train_main, ["--run", str(run), "--resume", "--no-progress"], capsys, "refusing")
    with pytest.raises(Exception):
        checkpoint.load(str(run / "ckpt.pt"))
    assert not marker.exists() and not out.exists()
    # control: the same file really is a program when unpickled without weights_only
    torch.load(run / "ckpt.pt", weights_only=False)["note"].close()
    assert marker.exists()


def test_every_torch_load_in_toydiff_is_weights_only():
    """A source check: toydiff opens no pickle except through torch.load(weights_only=True)."""
    loads = []
    for path in glob.glob(os.path.join(ROOT, "toydiff", "*.py")):
        for node in ast.walk(ast.parse(open(path).read())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if name == "torch.load":
                loads.append(path)
                assert keywords.get("weights_only") == "True", f"{path}:{node.lineno} torch.load without it"
            assert name not in ("pickle.load", "pickle.loads", "torch.serialization.add_safe_globals"), \
                f"{path}:{node.lineno} {name}"
            assert keywords.get("allow_pickle") != "True", f"{path}:{node.lineno} np.load(allow_pickle=True)"
    assert os.path.join(ROOT, "toydiff", "checkpoint.py") in loads

