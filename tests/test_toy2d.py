"""The exact 2D playground: the closed-form denoiser, its limits, the learned MLP against it, the CLI on a 2D run."""

from __future__ import annotations

import pytest
import torch

from toydiff import checkpoint, playground
from toydiff.config import ModelConfig, fit_to_data, from_dict, preset, to_dict
from toydiff.data import load_dataset
from toydiff.errors import UserError
from toydiff.guidance import guide
from toydiff.metrics import total_variation
from toydiff.models import build_model
from toydiff.pipeline import quota_labels
from toydiff.schedule import NoiseSchedule
from toydiff.toy2d import ExactDenoiser, Grid, energy_distance, guided_log_density, toy2d

MIX = toy2d()
SCHEDULE = NoiseSchedule("cosine", 1000)
EXACT = ExactDenoiser(MIX, SCHEDULE)


@pytest.mark.parametrize("label", [None, 0, 3])
def test_posterior_mean_matches_monte_carlo(label):
    """E[x0 | x_t, y] in closed form vs self-normalised importance sampling over 200k exact draws of x0."""
    x0, m = MIX.sample(200_000, torch.Generator().manual_seed(0))
    if label is not None:
        x0 = x0[MIX.classes[m] == label]
    t = 600
    ab = float(SCHEDULE.alpha_bar[t])
    x_t = torch.tensor([[-0.3, 0.1], [0.4, -0.3], [0.2, 0.5]], dtype=torch.float64)
    logw = -((x_t[:, None] - ab ** 0.5 * x0[None]) ** 2).sum(-1) / (2 * (1 - ab))          # (3, N)
    mc = (logw.softmax(1)[..., None] * x0[None]).sum(1)
    y = torch.full((3,), MIX.num_classes if label is None else label)
    exact = EXACT.x0(x_t, torch.full((3,), t), y)
    assert (exact - mc).abs().max() < 0.01


def test_high_noise_limits_are_the_means():
    """At t = T - 1, x0_hat(c) -> mu_c and x0_hat(null) -> mu for every x_t in the box."""
    x = torch.rand(50, 2, dtype=torch.float64) * 4 - 2
    t = torch.full((50,), SCHEDULE.T - 1)
    for c in range(MIX.num_classes):
        assert (EXACT.x0(x, t, torch.full((50,), c)) - MIX.class_means()[c]).abs().max() < 1e-3
    assert (EXACT.x0(x, t, torch.full((50,), MIX.num_classes)) - MIX.mean()).abs().max() < 1e-3


def test_low_noise_denoiser_is_near_identity_and_eps_is_consistent():
    """At t = 0 the posterior mean is ~x_t; eps and x0 agree through schedule.eps_to_x0."""
    x = torch.tensor([[-0.45, 0.05], [0.5, -0.4]], dtype=torch.float64)
    t, y = torch.zeros(2, dtype=torch.long), torch.tensor([0, 3])
    assert (EXACT.x0(x, t, y) - x).abs().max() < 0.01
    eps = EXACT(x.float(), t, y)
    assert torch.allclose(SCHEDULE.eps_to_x0(x.float(), t, eps).double(), EXACT.x0(x, t, y), atol=1e-4)


def test_s1_exact_samples_reproduce_component_masses():
    """s = 1 on prior quotas through guide + the sampler: mean p(m | x) matches pi (TV < 0.03 at 2000)."""
    labels = quota_labels(MIX.prior, 2000)
    x = playground.sample(guide(EXACT, labels, scale=1.0), SCHEDULE, seeds=range(2000))
    assert total_variation(playground.component_mass(MIX, x), MIX.weights) < 0.03


def test_bayes_classifier_and_not_k_density():
    x = Grid(1.5, 61).points
    post = MIX.class_posterior(x)
    assert torch.allclose(post.sum(1), torch.ones(len(x), dtype=torch.float64))
    # p(x | not k) (1 - pi_k) + pi_k p(x | k) = p(x)
    k = 1
    lhs = MIX.log_not(x, k).exp() * (1 - MIX.prior[k]) + MIX.prior[k] * MIX.log_density(x, k).exp()
    assert torch.allclose(lhs, MIX.log_density(x).exp(), rtol=1e-9)
    # CFG's tilt = p(x|c) p(c|x)^(s-1) up to a constant
    s, c = 3.0, 0
    diff = guided_log_density(MIX, x, pos=c, ref=None, scale=s) - (MIX.log_density(x, c) + (s - 1) * post[:, c].log())
    assert diff.max() - diff.min() < 1e-8


def test_energy_distance_floor():
    g = torch.Generator().manual_seed(0)
    a, b = MIX.sample(1000, g)[0], MIX.sample(1000, g)[0]
    floor = energy_distance(a, b)
    assert 0 <= floor < 0.005
    assert energy_distance(a, b + 0.2) > 10 * floor


def test_learned_field_approaches_exact(tmp_path):
    """A few hundred steps of the real training loop bring the MLP's x0_hat close to the exact one (loose)."""
    from toydiff.training import train

    cfg = preset("toy2d")
    cfg.train.steps, cfg.train.log_every, cfg.train.ckpt_every = 200, 100, 200
    data, info = load_dataset("toy2d")
    cfg.model = fit_to_data(cfg.model, info.shape, info.num_classes)
    untrained = build_model(cfg.model).eval()
    model = train(cfg, str(tmp_path / "run"), data=data, device=torch.device("cpu"), progress=False).eval()
    x = Grid(0.9, 9).points
    t = 500

    def gap(m):
        f, e = playground.field(m, SCHEDULE, x, t, pos=0, neg=1), playground.field(EXACT, SCHEDULE, x, t, pos=0, neg=1)
        return float((f["pos"] - e["pos"]).norm(dim=1).mean())
    assert gap(model) < 0.1 < gap(untrained)


def test_old_config_without_kind_loads_as_unet():
    d = to_dict(preset("digits"))
    del d["model"]["kind"]
    cfg = from_dict(d)
    assert cfg.model.kind == "unet" and cfg.model.data_shape == (1, 8, 8)


def test_shapes_come_from_the_data():
    assert ModelConfig(kind="mlp", in_channels=2).data_shape == (2,)
    with pytest.raises(UserError, match="cannot denoise samples of shape"):
        fit_to_data(ModelConfig(kind="unet"), (2,), 4)
    with pytest.raises(UserError, match="kind"):
        build_model(ModelConfig(kind="transformer"))
    data, info = load_dataset("toy2d", train=False)
    assert info.shape == (2,) and data.tensors[0].shape == (5000, 2) and info.num_classes == 4


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> str:
    from toydiff.train_cli import main

    run = str(tmp_path_factory.mktemp("toy") / "toy2d")
    main(["--dataset", "toy2d", "--run", run, "--steps", "30", "--timesteps", "50", "--no-progress",
          "--log-every", "10", "--ckpt-every", "30"])
    return run


def test_toy2d_run_samples_and_loads_safely(toy_run, tmp_path):
    from toydiff.sample_cli import main

    ckpt = torch.load(f"{toy_run}/ckpt.pt", weights_only=True)
    assert ckpt["config"]["model"]["kind"] == "mlp"
    run = checkpoint.load_run(f"{toy_run}/ckpt.pt")
    assert run.cfg.model.data_shape == (2,)
    main(["--run", toy_run, "--n", "6", "--out", str(tmp_path), "--class", "0", "--negative", "1"])
    assert (tmp_path / "points_cfg.png").is_file() and (tmp_path / "samples.npz").is_file()


@pytest.mark.parametrize("argv, message", [
    (["sample.py", "--figures", "all"], "--figures judges images"),
    (["sample.py", "--eval"], "--eval judges images"),
    (["train.py", "--dataset", "toy2d", "--width", "0"], "--width must lie in"),
])
def test_bad_input_is_one_line_exit_2(toy_run, argv, message, tmp_path, capsys):
    from toydiff import sample_cli, train_cli

    script, *rest = argv
    if script == "sample.py":
        rest += ["--run", toy_run, "--out", str(tmp_path)]
    else:
        rest += ["--run", str(tmp_path / "new")]
    with pytest.raises(SystemExit) as stop:
        (sample_cli if script == "sample.py" else train_cli).main(rest)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and message in err, err
