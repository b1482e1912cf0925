"""Loss with label dropout, a short overfit, checkpoints (weights_only) and exact resume."""

import csv
import os

import pytest
import torch

from toydiff import checkpoint
from toydiff.data import load_dataset
from toydiff.errors import UserError
from toydiff.schedule import NoiseSchedule
from toydiff.checkpoint import check_run_dir
from toydiff.runtime import fastest_threads, thread_candidates
from toydiff.train_cli import main as train_main
from toydiff.training import diffusion_loss, train

from conftest import TINY_TRAIN_FLAGS, tiny_config


class LabelSpy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, t, y):
        self.seen.append(y.clone())
        return torch.zeros_like(x)


@pytest.mark.parametrize("p, expect_null", [(0.0, 0.0), (1.0, 1.0), (0.5, 0.5)])
def test_label_dropout_rate(p, expect_null):
    spy = LabelSpy()
    y = torch.randint(0, 10, (4000,), generator=torch.Generator().manual_seed(0))
    diffusion_loss(spy, NoiseSchedule("cosine", 100), torch.zeros(4000, 1, 2, 2), y, p_uncond=p, null=10,
                   generator=torch.Generator().manual_seed(1))
    seen = spy.seen[0]
    assert (seen == 10).float().mean().item() == pytest.approx(expect_null, abs=0.03)
    kept = seen != 10
    assert torch.equal(seen[kept], y[kept])                  # dropout only ever replaces by the null label


def few_digits(n=32):
    x, y = load_dataset("digits")[0].tensors
    return torch.utils.data.TensorDataset(x[:n], y[:n])


def read_log(run):
    with open(os.path.join(run, "log.csv")) as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]


def test_a_short_overfit_lowers_the_loss(tmp_path):
    train(tiny_config(steps=60, log_every=10, warmup=5, lr=3e-3), str(tmp_path), data=few_digits(),
          device=torch.device("cpu"), progress=False)
    losses = [loss for _, loss in read_log(tmp_path)]
    assert len(losses) == 6 and losses[-1] < 0.6 * losses[0]


def test_checkpoint_loads_with_weights_only_and_rebuilds_the_ema_model(tmp_path):
    ema = train(tiny_config(steps=10), str(tmp_path), data=few_digits(), device=torch.device("cpu"), progress=False)
    raw = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert raw["format"] == "toydiff" and raw["version"] == checkpoint.FORMAT_VERSION and raw["step"] == 10
    assert set(raw) >= {"config", "model", "ema", "optimizer", "scheduler", "rng", "ema_updates"}
    run = checkpoint.load_run(str(tmp_path / "ckpt.pt"))
    model, cfg, step = run.model, run.cfg, run.step
    assert step == 10 and cfg == tiny_config(steps=10)
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 50]), torch.tensor([1, 10])
    torch.testing.assert_close(model(x, t, y), ema(x, t, y))


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    """Resuming from the step-10 checkpoint of a 20-step run replays steps 11..20 bit for bit."""
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    data, cpu, cfg = few_digits(), torch.device("cpu"), tiny_config(steps=20, keep_every=10)
    train(cfg, straight, data=data, device=cpu, progress=False)
    train(cfg, resumed, data=data, device=cpu, resume=checkpoint.load(os.path.join(straight, "ckpt_step10.pt")), progress=False)
    assert [row for row in read_log(straight) if row[0] > 10] == read_log(resumed)
    a, b = torch.load(os.path.join(straight, "ckpt.pt")), torch.load(os.path.join(resumed, "ckpt.pt"))
    for key in ("model", "ema", "optimizer"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_an_existing_run_is_not_overwritten_by_accident(tmp_path):
    train(tiny_config(steps=5, ckpt_every=5), str(tmp_path), data=few_digits(), device=torch.device("cpu"),
          progress=False)
    with pytest.raises(UserError, match="already holds a run"):
        check_run_dir(str(tmp_path), resume=False, overwrite=False)
    assert check_run_dir(str(tmp_path), resume=True, overwrite=False) == str(tmp_path / "ckpt.pt")
    assert check_run_dir(str(tmp_path), resume=False, overwrite=True) is None
    with pytest.raises(UserError, match="nothing to resume"):
        check_run_dir(str(tmp_path / "empty"), resume=True, overwrite=False)


def test_bf16_autocast_trains_on_the_cpu_and_fp16_needs_cuda(tmp_path):
    train(tiny_config(steps=3, amp="bf16"), str(tmp_path / "bf16"), data=few_digits(), device=torch.device("cpu"),
          progress=False)
    assert read_log(str(tmp_path / "bf16"))[-1][0] == 3
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        train(tiny_config(steps=3, amp="fp16"), str(tmp_path / "fp16"), data=few_digits(),
              device=torch.device("cpu"), progress=False)


def test_the_fastest_thread_count_is_the_one_measured_fastest():
    """A step that is slow on many threads (as on a busy machine) picks one thread; torch's count is restored."""
    import time
    before = torch.get_num_threads()
    n, seconds = fastest_threads(lambda: time.sleep(0.02 if torch.get_num_threads() > 1 else 0.001), [2, 1])
    assert n == 1 and set(seconds) == {2, 1} and seconds[2] > seconds[1] > 0
    assert torch.get_num_threads() == before
    assert thread_candidates(2) == [2, 1] and thread_candidates(16) == [16, 15, 8, 1] and thread_candidates(1) == [1]


def test_a_run_keeps_its_thread_count_when_resumed(tmp_path, capsys, monkeypatch):
    """The count changes float rounding: --threads is stored, and --resume (auto) takes it back, not a new guess."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    run, before = str(tmp_path / "run"), torch.get_num_threads()
    train_main(["--run", run, *TINY_TRAIN_FLAGS, "--steps", "5", "--threads", "1"])
    assert torch.load(os.path.join(run, "ckpt.pt"), weights_only=True)["threads"] == 1
    assert "(1 thread)" in capsys.readouterr().out and torch.get_num_threads() == before
    train_main(["--run", run, "--resume", "--steps", "10", "--no-progress"])
    assert "(1 thread, as the run started)" in capsys.readouterr().out
    assert torch.load(os.path.join(run, "ckpt.pt"), weights_only=True)["threads"] == 1
    auto = TINY_TRAIN_FLAGS[:-2]                                     # without --threads 2
    train_main(["--run", str(tmp_path / "auto"), *auto, "--steps", "5"])
    assert "the fastest per step of" in capsys.readouterr().out      # a fresh run, no OMP_NUM_THREADS: measured


def test_min_snr_weighting_only_ever_lowers_the_weight_and_a_huge_gamma_is_plain_mse():
    """w_t = min(SNR_t, gamma) / SNR_t lies in (0, 1]: the weighted loss is at most the plain one on the same draws,
    and equals it once gamma is above every SNR_t of the schedule."""
    schedule, model = NoiseSchedule("cosine", 100), torch.nn.Conv2d(1, 1, 3, padding=1)
    net = lambda x, t, y: model(x)                                   # noqa: E731
    x0, y = torch.randn(64, 1, 4, 4), torch.zeros(64, dtype=torch.long)

    def loss(gamma):
        return diffusion_loss(net, schedule, x0, y, p_uncond=0.1, null=10, generator=torch.Generator().manual_seed(0),
                              min_snr_gamma=gamma)
    snr = schedule.alpha_bar / (1 - schedule.alpha_bar)
    assert loss(5.0) < loss(0.0)
    torch.testing.assert_close(loss(float(snr.max()) * 2), loss(0.0))
