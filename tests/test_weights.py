"""Shipped weights: EMA weights, config and provenance only, loaded with weights_only, sampled with no run folder;
the files in weights/ are such files."""

import os
import pathlib

import pytest
import torch

from toydiff import checkpoint
from toydiff.sample_cli import main as sample_main
from toydiff.weights import export
from toydiff.weights_cli import main as export_main

from test_bad_input import refused, snapshot

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROVENANCE = {"command", "seed", "commit", "train_seconds", "device", "torch", "source", "exported"}


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return isinstance(value, (str, int, float, bool, type(None)))


def test_export_keeps_the_ema_weights_and_drops_the_training_state(trained_run, tmp_path):
    out = str(tmp_path / "tiny.pt")
    prov = export(trained_run, out, command="python train.py --steps 10", commit="abc", device="cpu")
    blob = torch.load(out, map_location="cpu", weights_only=True)
    full = checkpoint.load(trained_run)
    assert set(blob) == {"format", "version", "config", "step", "ema", "provenance"}
    assert blob["step"] == full["step"] == 10
    assert all(torch.equal(blob["ema"][k], full["ema"][k]) for k in full["ema"])
    assert set(prov) == PROVENANCE and _plain(blob["provenance"]) and blob["provenance"]["train_seconds"] > 0
    assert os.path.getsize(out) < os.path.getsize(os.path.join(trained_run, "ckpt.pt"))
    assert blob["config"]["train"]["data_dir"] is None           # the trainer's folder is not the user's
    assert {k: v for k, v in blob["config"]["train"].items() if k != "data_dir"} == \
        {k: v for k, v in full["config"]["train"].items() if k != "data_dir"}


def test_shipped_weights_sample_with_no_run_folder(trained_run, tmp_path, monkeypatch, capsys):
    """sample.py --ckpt FILE.pt writes under runs/weights/FILE/ (never into weights/), and --weights model, which a
    weights file does not hold, is one line."""
    shipped = tmp_path / "weights"
    shipped.mkdir()
    export(trained_run, str(shipped / "tiny.pt"), command="c", commit="c", device="cpu")
    monkeypatch.chdir(tmp_path)
    sample_main(["--ckpt", "weights/tiny.pt", "--n", "1", "--sample-steps", "2"])
    assert (tmp_path / "runs" / "weights" / "tiny" / "samples" / "samples.npz").is_file()
    assert sorted(os.listdir(shipped)) == ["tiny.pt"]
    before = snapshot(str(tmp_path))
    refused(sample_main, ["--ckpt", "weights/tiny.pt", "--weights", "model", "--n", "1"], capsys,
            "holds only ema weights")
    assert snapshot(str(tmp_path)) == before


def test_export_refuses_before_writing(trained_run, tmp_path, capsys):
    before = snapshot(str(tmp_path))
    refused(export_main, [str(tmp_path / "missing"), str(tmp_path / "w.pt"), "--command", "c"], capsys, "not found")
    refused(export_main, [trained_run, str(tmp_path), "--command", "c"], capsys, "is a folder")
    refused(export_main, [trained_run, str(tmp_path / "w.pt")], capsys, "--command")
    assert snapshot(str(tmp_path)) == before


def test_judge_is_cached_beside_its_checkpoint():
    assert checkpoint.judge_name("runs/digits/ckpt.pt", "digits") == "judge.pt"
    assert checkpoint.judge_name("runs/digits/ckpt_step500.pt", "digits") == "judge.pt"
    assert checkpoint.judge_name("weights/digits_step500.pt", "digits") == "digits.judge.pt"     # one per dataset


@pytest.mark.parametrize("path", sorted((ROOT / "weights").glob("*.pt")), ids=lambda p: p.name)
def test_every_shipped_file_loads_as_data(path):
    """Every file in weights/ is read with weights_only=True: weights rebuild their model and say where they came
    from; judges load as judges."""
    if path.name.endswith(".judge.pt"):
        from toydiff.judge import load_judge
        assert 0.9 < load_judge(str(path)).test_accuracy <= 1
        return
    run = checkpoint.load_run(str(path))
    assert set(run.ckpt["provenance"]) >= PROVENANCE and _plain(run.ckpt["provenance"])
    assert "optimizer" not in run.ckpt and "model" not in run.ckpt
