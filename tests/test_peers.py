"""The peers benchmark's parts: nets behind toydiff's model contract, one loop for all, the budget in turns."""

from __future__ import annotations

import copy

import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import TensorDataset

from benchmarks.peers import Trainee, peer_nets, seconds_per_step, train_side_by_side, train_step
from benchmarks.reference_unet import n_params
from toydiff.guidance import guide
from toydiff.schedule import NoiseSchedule
from toydiff.training import ema_with_warmup

from conftest import tiny_config


def _data(n: int = 64) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(n, 1, 8, 8, generator=g) * 2 - 1, torch.randint(0, 10, (n,), generator=g))


def test_every_peer_is_sized_to_toydiff_and_guided_like_it():
    """Each net maps (x_t, t, y) with y = K the null label to eps of x's shape, has about toydiff's parameter
    count, and runs under guide(): s = 1 is the conditional prediction itself."""
    cfg = tiny_config()
    nets = peer_nets(cfg)
    assert {"toydiff", "contextunet"} <= set(nets)                    # diffusers too when it is installed
    target = n_params(nets["toydiff"])
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 50, 99])
    y = torch.tensor([0, 5, 10])
    for name, net in nets.items():
        net.eval()
        assert abs(n_params(net) - target) / target < 0.5, name
        eps = net(x, t, y)
        assert eps.shape == x.shape, name
        guided = guide(net, y[:2], scale=1.0)
        torch.testing.assert_close(guided(x[:2], t[:2]), net(x[:2], t[:2], y[:2]), msg=name)


def test_the_probe_changes_nothing_and_a_step_depends_on_the_step_alone():
    """Two copies of a net (BatchNorm: buffers of two dtypes) take the same step to the same weights: the batch
    and the noise come from the step number; the budget probe leaves the net it times untouched."""
    cfg = tiny_config()
    images, labels = _data().tensors
    schedule, cpu = NoiseSchedule.from_config(cfg.diffusion), torch.device("cpu")
    torch.manual_seed(0)
    net = peer_nets(cfg)["contextunet"].train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    seconds_per_step(Trainee("contextunet", net, cfg), images, labels, schedule, cpu, sync=lambda d: None)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    a, b = Trainee("a", net, cfg), Trainee("b", copy.deepcopy(net), cfg)
    for tr in (a, b):
        train_step(tr, images, labels, schedule, cpu)
    assert a.done == b.done == 1 and a.ema.n_averaged == 1
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    assert not torch.equal(before["net.out.3.weight"], a.model.state_dict()["net.out.3.weight"])


def test_the_ema_copies_a_counter_and_averages_the_rest():
    """A BatchNorm's num_batches_tracked (int64) is copied; float weights and running stats are averaged."""
    net = torch.nn.BatchNorm1d(3)
    ema = AveragedModel(net, multi_avg_fn=ema_with_warmup(0.9), use_buffers=True)
    ema.update_parameters(net)                                       # the first update copies
    with torch.no_grad():
        net.weight.fill_(2.0)
    net.num_batches_tracked.fill_(7)
    ema.update_parameters(net)
    d = min(0.9, 2 / 11)
    torch.testing.assert_close(ema.module.weight, torch.full((3,), d * 1.0 + (1 - d) * 2.0))
    assert int(ema.module.num_batches_tracked) == 7


def test_side_by_side_gives_every_net_its_planned_steps_in_turns():
    cfg = tiny_config(warmup=2, batch_size=8)
    trainees = train_side_by_side(cfg, _data(), budget=0.01, device=torch.device("cpu"), sync=lambda d: None)
    assert [tr.name for tr in trainees][:1] == ["toydiff"]
    for tr in trainees:
        assert tr.done == tr.cfg.train.steps >= cfg.train.warmup + 1 and tr.seconds > 0
