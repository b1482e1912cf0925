"""One front door per command: argparse stays in the CLI modules, modes are exclusive, no flag is silently ignored,
every check runs before the first byte is written, and each command reads each checkpoint once."""

import ast
import collections
import json
import os
import pathlib

import numpy as np
import pytest
import torch

from toydiff import checkpoint
from toydiff.errors import UserError
from toydiff.guidance import guide
from toydiff.pipeline import generate
from toydiff.sample_cli import main as sample_main
from toydiff.sampling import Sampler
from toydiff.schedule import NoiseSchedule
from toydiff.train_cli import main as train_main

from conftest import TINY_TRAIN_FLAGS
from test_bad_input import refused, snapshot
from test_metrics import eval_run  # noqa: F401  (a tiny run with a cached judge)
from test_judge import digits_judge  # noqa: F401
from test_viz import fake_judge  # noqa: F401

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "toydiff"
CLI_MODULES = {"cli.py", "train_cli.py", "sample_cli.py", "study_cli.py", "weights_cli.py", "lesson_cli.py"}


# ---------------------------------------------------------------- layers

def test_only_the_cli_modules_see_argparse():
    """No library module imports argparse, names a Namespace, or takes an `args` parameter."""
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name in CLI_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
                offenders.append(f"{path.name}: import argparse")
            elif isinstance(node, ast.ImportFrom) and node.module == "argparse":
                offenders.append(f"{path.name}: from argparse")
            elif isinstance(node, (ast.Name, ast.Attribute)) and "Namespace" in (getattr(node, "id", None),
                                                                                 getattr(node, "attr", None)):
                offenders.append(f"{path.name}: Namespace")
            elif isinstance(node, ast.arg) and node.arg == "args":
                offenders.append(f"{path.name}:{node.lineno}: a parameter named args")
    assert not offenders, offenders
    assert {p.name for p in PACKAGE.glob("*_cli.py")} | {"cli.py"} == CLI_MODULES


def test_no_toydiff_module_imports_the_benchmarks():
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not any(name.split(".")[0] == "benchmarks" for name in names), path.name


# ---------------------------------------------------------------- values built once

def test_a_sampler_owns_its_defaults():
    assert Sampler().resolve(1000).sample_steps == 50 and Sampler().resolve(1000).label == "DDIM-50"
    assert Sampler("ddpm").resolve(1000).label == "DDPM-1000"                 # not "DDPM-50"
    assert Sampler("ddim", eta=1.0).resolve(100).label == "DDIM-50 (eta 1)"
    assert Sampler(sample_steps=7).resolve(10).sample_steps == 7


def test_a_default_above_T_becomes_T_with_a_note_and_an_explicit_one_is_refused(capsys):
    assert Sampler().resolve(10).sample_steps == 10
    err = capsys.readouterr().err
    assert err.startswith("note:") and len(err.strip().splitlines()) == 1
    with pytest.raises(UserError, match="model's T is 10"):
        Sampler(sample_steps=11).resolve(10)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="euler"), "unknown sampler"), (dict(sample_steps=0), "must be >= 1"),
    (dict(eta=float("nan")), "eta"), (dict(eta=-1.0), "eta"), (dict(kind="ddpm", eta=0.5), "DDIM only"),
    (dict(batch_size=0), "batch size"),
])
def test_a_sampler_refuses_bad_settings_when_built(kwargs, message):
    with pytest.raises(UserError, match=message):
        Sampler(**kwargs)


def test_guided_take_slices_every_per_sample_field(tiny_model):
    """take(i) of a guided denoiser with per-sample negatives equals the denoiser built for those samples alone."""
    pos, neg = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([5, 6, 7, 8, 9])
    g = guide(tiny_model, pos, scale=3.0, negatives=[(neg, 0.7), (torch.tensor(9), 0.3)])
    x, t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([40, 70])
    alone = guide(tiny_model, pos[1:3], scale=3.0, negatives=[(neg[1:3], 0.7), (torch.tensor(9), 0.3)])
    part = g.take(slice(1, 3))
    assert part.pos.tolist() == [1, 2] and part.ref.tolist() == [[6, 7], [9, 9]]
    torch.testing.assert_close(part(x, t), alone(x, t))


def test_generate_batches_through_take(tiny_model):
    g = guide(tiny_model, torch.tensor([1, 2, 3]), scale=2.0, negatives=[(torch.tensor([4, 5, 6]), 1.0)])
    sched = NoiseSchedule("cosine", 100)
    whole = generate(g, sched, Sampler("ddim", 3), seeds=[0, 1, 2])
    split = generate(g, sched, Sampler("ddim", 3, batch_size=2), seeds=[0, 1, 2])
    torch.testing.assert_close(whole, split, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- modes and flags

@pytest.mark.parametrize("argv", [
    ["--figures", "all", "--sweep"], ["--sweep", "--eval", "x.npz"], ["--figures", "means", "--eval"],
])
def test_modes_are_mutually_exclusive(trained_run, tmp_path, capsys, argv):
    before = snapshot(trained_run)
    refused(sample_main, ["--run", trained_run, "--out", str(tmp_path / "o"), *argv], capsys, "not allowed with")
    assert not (tmp_path / "o").exists() and snapshot(trained_run) == before


@pytest.mark.parametrize("argv, message", [
    (["--figures", "means", "--interval", "10:40"], "--interval is not used by --figures"),
    (["--figures", "means", "--rescale", "0.5"], "--rescale is not used by --figures"),
    (["--figures", "means", "--ref-ckpt", "x.pt"], "--ref-ckpt is not used by --figures"),
    (["--figures", "means", "--negative", "3", "--negative", "4"], "one negative class"),
    (["--figures", "means", "--negative", "3:0.5"], "without a weight"),
    (["--sweep", "--rescale", "0.5"], "--rescale is not used by --sweep"),
    (["--sweep", "--class", "3"], "--class is not used by --sweep"),
    (["--sweep", "--negative", "3"], "--negative is not used by --sweep"),
    (["--sweep", "--scale", "5"], "--scale is not used by --sweep"),
    (["--sweep", "--n", "4"], "--n is not used by --sweep"),
    (["--eval", "x.npz", "--sample-steps", "3"], "--sample-steps is not used by --eval FILE"),
    (["--eval", "x.npz", "--out", "o"], "--out is not used by --eval FILE"),
    (["--cloud-n", "5"], "--cloud-n is not used by sampling"),
    (["--sweep-n", "5"], "--sweep-n is not used by sampling"),
    (["--class", "none", "--ref-ckpt", "CKPT"], "--class none has none"),
])
def test_a_flag_the_mode_does_not_use_is_refused(trained_run, tmp_path, capsys, argv, message):
    argv = [os.path.join(trained_run, "ckpt.pt") if a == "CKPT" else a for a in argv]
    before = snapshot(trained_run)
    err = refused(sample_main, ["--run", trained_run, *argv], capsys, message)
    assert "drop it" in err or "--figures" in err or "none" in err
    assert not (tmp_path / "o").exists() and snapshot(trained_run) == before


def test_sweep_honours_eta_and_records_the_sampler(eval_run, tmp_path):
    out = str(tmp_path / "fig")
    sample_main(["--run", eval_run, "--sweep", "--sweep-n", "1", "--sample-steps", "2", "--sweep-scales", "2",
                 "--eta", "1", "--out", out])
    settings = json.load(open(os.path.join(out, "sweep.json")))["settings"]
    assert settings["sampler"] == "DDIM-2 (eta 1)" and settings["eta"] == 1.0 and settings["sample_steps"] == 2


def test_samples_npz_stores_its_set_layout(trained_run, tmp_path):
    out = tmp_path / "s"
    sample_main(["--run", trained_run, "--n", "1", "--sample-steps", "2", "--out", str(out),
                 "--ref-ckpt", os.path.join(trained_run, "ckpt.pt")])
    with np.load(out / "samples.npz") as d:
        sets = json.loads(str(d["settings"]))["sets"]
    assert [(s["name"], s["neg_rate_from"]) for s in sets] == [
        ("none", "negative"), ("cfg", "negative"), ("negative", "negative"), ("autoguidance", "negative")]


# ---------------------------------------------------------------- checks before writing

def test_train_refuses_a_bad_grid_scale_before_step_0(tmp_path, capsys):
    run = tmp_path / "run"
    refused(train_main, ["--run", str(run), *TINY_TRAIN_FLAGS, "--steps", "2", "--grid-scale", "nan"], capsys,
            "guidance scale s must be a finite number")
    assert not run.exists()


def test_a_run_with_T_below_50_trains_and_samples_with_a_note(tmp_path, capsys):
    """The DDIM default of 50 sampling steps becomes T (with one note) for the final grid and for sample.py."""
    run = str(tmp_path / "run")
    flags = [a if a != "50" else "10" for a in TINY_TRAIN_FLAGS]                # --timesteps 10
    train_main(["--run", run, *flags, "--steps", "2"])
    err = capsys.readouterr().err
    assert "note:" in err and "sampling with 10" in err and "Traceback" not in err
    assert os.path.isfile(os.path.join(run, "samples_cfg2.png"))
    sample_main(["--run", run, "--n", "1", "--out", str(tmp_path / "s")])
    assert os.path.isfile(tmp_path / "s" / "samples.npz")
    assert json.loads(str(np.load(tmp_path / "s" / "samples.npz")["settings"]))["sample_steps"] == 10


# ---------------------------------------------------------------- each checkpoint read once

@pytest.fixture
def reads(monkeypatch):
    """Counts checkpoint.read calls per file."""
    counts = collections.Counter()
    real = checkpoint.read

    def counting(path, *a, **k):
        counts[os.path.basename(path)] += 1
        return real(path, *a, **k)
    monkeypatch.setattr(checkpoint, "read", counting)
    return counts


def test_each_command_reads_each_checkpoint_once(eval_run, tmp_path, reads, fake_judge):
    sample_main(["--run", eval_run, "--n", "1", "--sample-steps", "2", "--out", str(tmp_path / "s"), "--eval"])
    assert reads["ckpt.pt"] == 1
    reads.clear()
    sample_main(["--run", eval_run, "--figures", "grids", "--n", "1", "--sample-steps", "2",
                 "--out", str(tmp_path / "f")])
    assert reads["ckpt.pt"] == 1
    reads.clear()
    sample_main(["--run", eval_run, "--sweep", "--sweep-n", "1", "--sample-steps", "2", "--sweep-scales", "2",
                 "--out", str(tmp_path / "w")])
    assert reads["ckpt.pt"] == 1
    reads.clear()
    train_main(["--run", eval_run, "--resume", "--steps", "12", "--no-progress"])
    assert reads["ckpt.pt"] == 1
