"""The two front ends end to end on a tiny run, and every bad input as one line with exit code 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from toydiff.sample_cli import main as sample_main
from toydiff.train_cli import main as train_main

from conftest import TINY_TRAIN_FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_writes_checkpoint_log_and_grid(trained_run):
    assert {"ckpt.pt", "log.csv", "samples_cfg2.png"} <= set(os.listdir(trained_run))
    assert torch.load(os.path.join(trained_run, "ckpt.pt"), weights_only=True)["step"] == 10


def test_sample_writes_three_grids_and_a_complete_npz(trained_run, tmp_path):
    out = str(tmp_path / "s")
    sample_main(["--run", trained_run, "--n", "2", "--sample-steps", "3", "--out", out, "--scale", "2.5"])
    assert {"grid_none.png", "grid_cfg.png", "grid_negative.png", "samples.npz"} <= set(os.listdir(out))
    d = np.load(os.path.join(out, "samples.npz"), allow_pickle=False)
    n = 3 * 10 * 2
    assert d["images"].shape == (n, 1, 8, 8) and d["images"].dtype == np.float32
    assert 0 <= d["images"].min() and d["images"].max() <= 1
    assert d["labels"].tolist() == list(np.repeat(np.arange(10), 2)) * 3
    assert (d["negatives"][d["sets"] != "negative"] == -1).all()
    neg = d["negatives"][d["sets"] == "negative"][:, 0]
    assert neg.tolist() == ((np.repeat(np.arange(10), 2) + 1) % 10).tolist()
    assert sorted(set(d["scales"].tolist())) == [1.0, 2.5]
    assert d["seeds"][:20].tolist() == list(range(20)) and (d["seeds"][:20] == d["seeds"][20:40]).all()
    assert json.loads(str(d["settings"]))["step"] == 10
    # the s = 1 set and the CFG set share seeds but not images
    assert not np.array_equal(d["images"][:20], d["images"][20:40])


def test_removal_and_weighted_negatives(trained_run, tmp_path):
    out = str(tmp_path / "r")
    sample_main(["--run", trained_run, "--class", "none", "--negative", "7", "--n", "3", "--sample-steps", "2",
                 "--out", out])
    d = np.load(os.path.join(out, "samples.npz"))
    assert d["sets"].tolist() == ["none"] * 3 + ["removal"] * 3 + ["exact"] * 3
    assert (d["labels"][:6] == -1).all() and d["negatives"][3:, 0].tolist() == [7] * 6
    exact = d["labels"][6:]                              # the baseline: classes of the prior without 7, s = 1
    assert 7 not in exact and (d["scales"][6:] == 1).all()
    out = str(tmp_path / "w")
    sample_main(["--run", trained_run, "--class", "3", "--negative", "8:3", "--negative", "5:1", "--n", "2",
                 "--sample-steps", "2", "--out", out])
    d = np.load(os.path.join(out, "samples.npz"))
    neg = d["sets"] == "negative"
    assert d["negatives"][neg].tolist() == [[8, 5]] * 2
    np.testing.assert_allclose(d["negative_weights"][neg], [[0.75, 0.25]] * 2)


def test_posterior_aware_sets_and_their_settings(trained_run, tmp_path):
    """--dynamic adds a 'dynamic' set (removal and positive class alike) at the --dynamic-max ceiling, recorded in
    the settings; --dynamic-max / --tracker without --dynamic are refused."""
    out = str(tmp_path / "d")
    sample_main(["--run", trained_run, "--class", "none", "--negative", "7", "--n", "4", "--sample-steps", "3",
                 "--dynamic", "1", "--tracker", "all", "--out", out])
    d = np.load(os.path.join(out, "samples.npz"))
    assert list(dict.fromkeys(d["sets"].tolist())) == ["none", "removal", "dynamic", "exact"]
    dyn = d["sets"] == "dynamic"
    assert (d["negatives"][dyn, 0] == 7).all() and (d["scales"][dyn] == 20).all()
    settings = json.loads(str(d["settings"]))
    assert settings["dynamic"] == 1.0 and settings["tracker"] == "all" and settings["dynamic_max"] == 20.0
    sample_main(["--run", trained_run, "--class", "2", "--negative", "5", "--n", "2", "--sample-steps", "3",
                 "--dynamic", "2", "--dynamic-max", "4", "--out", str(tmp_path / "p")])
    d = np.load(os.path.join(str(tmp_path / "p"), "samples.npz"))
    assert list(dict.fromkeys(d["sets"].tolist())) == ["none", "cfg", "negative", "dynamic"]
    assert (d["scales"][d["sets"] == "dynamic"] == 4).all()


@pytest.mark.parametrize("argv, message", [
    (["--dynamic-max", "5"], "add --dynamic LAMBDA"),
    (["--tracker", "all"], "add --dynamic LAMBDA"),
    (["--class", "none", "--dynamic", "1"], "give --negative K"),
    (["--class", "none", "--negative", "3", "--dynamic", "0"], "lambda must be a finite number"),
    (["--class", "none", "--negative", "3:2", "--negative", "4:1", "--dynamic", "1"], "drop the :WEIGHT"),
])
def test_bad_posterior_aware_flags_exit_2_writing_nothing(trained_run, tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as e:
        sample_main(["--run", trained_run, "--out", str(out), "--sample-steps", "2", *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err and not out.exists()


def run_main(main, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    return exit_info.value.code, err


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "imagenet"], "invalid choice"),
    (["--steps", "0"], "--steps must lie in 1..1000000000, got 0"),
    (["--batch-size", "0"], "--batch-size must lie in 1..65536, got 0"),
    (["--lr", "nan"], "--lr"),
    (["--p-uncond", "1.5"], "--p-uncond"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "nonsense"], "device"),
    (["--dataset", "mnist", "--data-dir", "/nonexistent/folder"], "does not exist"),
    (["--channel-mult", "1,x"], "comma-separated"),
    (["--resume"], "nothing to resume"),
    (["--threads", "0"], "expected auto or a whole number in 1..4096, got '0'"),
    (["--threads", "many"], "--threads"),
])
def test_train_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    run = str(tmp_path / "run")
    code, err = run_main(train_main, ["--run", run, *argv], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not os.path.exists(os.path.join(run, "ckpt.pt"))


def test_train_refuses_to_clobber_an_existing_run(trained_run, capsys):
    before = os.path.getmtime(os.path.join(trained_run, "ckpt.pt"))
    code, err = run_main(train_main, ["--run", trained_run, "--steps", "3", *TINY_TRAIN_FLAGS], capsys)
    assert code == 2 and "already holds a run" in err and len(err.splitlines()) == 1
    assert os.path.getmtime(os.path.join(trained_run, "ckpt.pt")) == before


@pytest.mark.parametrize("argv, message", [
    (["--class", "10"], "must lie in 0..9"),
    (["--class", "-1"], "must lie in 0..9"),
    (["--class", "seven"], "argument --class: expected an integer"),
    (["--negative", "10"], "must lie in 0..9"),
    (["--negative", "3:0"], "weights must be finite and > 0"),
    (["--negative", "3:-1"], "weights must be finite and > 0"),
    (["--negative", "a:b"], "K or K:WEIGHT"),
    (["--scale", "nan"], "finite"),
    (["--scale", "inf"], "finite"),
    (["--sample-steps", "0"], "sampling steps must be >= 1"),
    (["--sample-steps", "51"], "the model's T is 50"),
    (["--steps", "10"], "--sample-steps"),
    (["--n", "0"], "argument --n: expected a whole number >= 1"),
    (["--sampler", "euler"], "invalid choice"),
])
def test_sample_bad_input_is_one_line_and_exit_2(trained_run, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code, err = run_main(sample_main, ["--run", trained_run, "--out", str(out), *argv], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (out / "samples.npz").exists()


def test_bad_checkpoints_are_refused(tmp_path, capsys):
    cases = {"missing.pt": None, "truncated.pt": b"PK\x03\x04 this is not a whole zip", "other.pt": "other"}
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    (tmp_path / "truncated.pt").write_bytes(cases["truncated.pt"])
    for name, expect in [("missing.pt", "not found"), ("truncated.pt", "truncated"),
                         ("other.pt", "not a toydiff checkpoint")]:
        code, err = run_main(sample_main, ["--ckpt", str(tmp_path / name), "--out", str(tmp_path / "o")], capsys)
        assert code == 2 and expect in err and len(err.splitlines()) == 1, err


def test_scripts_exit_2_with_one_line_as_real_processes(tmp_path):
    """The real entry points, not just main(): exit status 2, one line on stderr, no traceback."""
    for script, args in [("sample.py", ["--ckpt", str(tmp_path / "none.pt")]), ("train.py", ["--steps", "-3"])]:
        proc = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_autoguidance_with_the_same_checkpoint_equals_no_guidance(trained_run, tmp_path):
    out = str(tmp_path / "auto")
    sample_main(["--run", trained_run, "--ref-ckpt", os.path.join(trained_run, "ckpt.pt"), "--n", "2",
                 "--sample-steps", "3", "--out", out])
    d = np.load(os.path.join(out, "samples.npz"))
    assert "autoguidance" in d["sets"].tolist()
    np.testing.assert_allclose(d["images"][d["sets"] == "autoguidance"], d["images"][d["sets"] == "none"],
                               atol=1e-4)


def test_an_interval_covering_every_t_equals_plain_guidance(trained_run, tmp_path):
    args = ["--run", trained_run, "--class", "4", "--n", "3", "--sample-steps", "4"]
    sample_main([*args, "--out", str(tmp_path / "plain")])
    sample_main([*args, "--out", str(tmp_path / "all"), "--interval", "0:49"])        # the tiny run has T = 50
    sample_main([*args, "--out", str(tmp_path / "empty"), "--interval", "20:30"])     # visits t = 49, 33, 16, 0
    plain, every, empty = (np.load(tmp_path / k / "samples.npz") for k in ("plain", "all", "empty"))
    cfg = plain["sets"] == "cfg"
    np.testing.assert_allclose(every["images"][cfg], plain["images"][cfg], atol=1e-5)
    np.testing.assert_allclose(empty["images"][cfg], plain["images"][plain["sets"] == "none"], atol=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["--interval", "800"], "argument --interval: expected LO:HI"),
    (["--interval", "9:3"], "guidance interval must have t_lo <= t_hi"),
    (["--rescale", "2"], "rescale phi must lie in [0, 1]"), (["--ref-ckpt", "/nonexistent.pt"], "not found"),
])
def test_beyond_cfg_bad_input(trained_run, tmp_path, capsys, argv, message):
    code, err = run_main(sample_main, ["--run", trained_run, "--out", str(tmp_path / "o"), *argv], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_autoguidance_refuses_a_reference_for_another_task(trained_run, tmp_path, capsys):
    ckpt = torch.load(os.path.join(trained_run, "ckpt.pt"), weights_only=True)
    ckpt["config"]["diffusion"]["timesteps"] = 80                    # loads fine, but denoises another chain
    torch.save(ckpt, tmp_path / "other.pt")
    out = tmp_path / "o"
    code, err = run_main(sample_main, ["--run", trained_run, "--ref-ckpt", str(tmp_path / "other.pt"),
                                       "--out", str(out)], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "autoguidance needs the same task" in err, err
    assert not out.exists()


def test_sample_uses_the_runs_own_eta_unless_told(trained_run, tmp_path):
    """A run may recommend a stochastic sampler (the MNIST preset: diffusion.eta = 1): sample.py's DDIM takes it,
    --eta overrides it, and another sampler (no eta) ignores it."""
    ckpt = torch.load(os.path.join(trained_run, "ckpt.pt"), weights_only=True)
    ckpt["config"]["diffusion"]["eta"] = 1.0
    torch.save(ckpt, tmp_path / "ckpt.pt")

    def eta_of(*flags):
        out = tmp_path / f"out{len(os.listdir(tmp_path))}"
        sample_main(["--ckpt", str(tmp_path / "ckpt.pt"), "--n", "1", "--sample-steps", "3", "--out", str(out), *flags])
        return json.loads(str(np.load(out / "samples.npz")["settings"]))["eta"]
    assert eta_of() == 1.0 and eta_of("--eta", "0") == 0.0 and eta_of("--sampler", "dpm++2m") == 0.0
