"""`python -m benchmarks.bench peers`: toydiff's UNet beside the nets a user would pick instead, trained side by side.

The peers, each sized to toydiff's preset parameter count:
    diffusers    `diffusers.UNet2DModel` (two resolutions, attention at the lower one, a class embedding of K + 1
                 labels with K the null label) -- the network of the diffusers training tutorials;
    contextunet  the ContextUnet layout of TeaPearce/Conditional_Diffusion_MNIST, the classic CFG-on-MNIST tutorial
                 network (benchmarks/reference_unet.py: written here after that layout, not copied; the null label is
                 the all-zero one-hot, as there).

One loop trains them all: toydiff's recipe (AdamW, warm-up then cosine decay, EMA with warm-up, gradient clipping,
label dropout, min-SNR weighting: the preset's `train` section, `--set` changes it for every net), the same batches
and the same noise at each step. Every net gets the same budget of seconds: a short probe times one step of each,
each plans `budget / seconds_per_step` steps (its LR schedule ends there), and the nets train in turns of
`PEERS_TURN` steps so that a drift of the machine (another process, thermal limits) falls on all of them alike.
Each EMA net is then scored as time-to-quality scores a checkpoint (`bench.Scorer`).

diffusers is a benchmark-only dependency: `pip install -e ".[peers]"`; without it the diffusers net is skipped
and the report says so.
"""

from __future__ import annotations

import copy
import dataclasses
import time

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from toydiff.config import Config, ModelConfig
from toydiff.schedule import NoiseSchedule
from toydiff.training import diffusion_loss, ema_with_warmup, lr_lambda, step_generator
from toydiff.unet import UNet

from .reference_unet import matched_reference, n_params

PEERS_TURN = 25           # steps a net trains before the next one takes its turn
PROBE_STEPS = 3           # timed steps per net in the budget probe (after one untimed)


class Peer(nn.Module):
    """A peer net behind toydiff's model contract: forward(x_t (B, C, H, W), t (B,), y (B,), y = K the null label)
    -> eps (B, C, H, W), and the `cfg` (ModelConfig) that guidance reads for the null label and the image shape."""

    def __init__(self, net: nn.Module, cfg: ModelConfig, *, diffusers: bool = False):
        super().__init__()
        self.net, self.cfg, self.diffusers = net, cfg, diffusers

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.diffusers:
            return self.net(x, t, class_labels=y).sample
        return self.net(x, t, y)


def diffusers_unet(m: ModelConfig, target: int) -> nn.Module | None:
    """The `UNet2DModel` whose parameter count is closest to `target` (base width a multiple of 8); None when
    diffusers is not installed."""
    try:
        from diffusers import UNet2DModel
    except ImportError:
        return None

    def build(w: int) -> nn.Module:
        return UNet2DModel(sample_size=m.image_size, in_channels=m.in_channels, out_channels=m.in_channels,
                           layers_per_block=1, block_out_channels=(w, 2 * w), norm_num_groups=8,
                           down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D"), num_class_embeds=m.num_classes + 1)

    sizes = {w: n_params(build(w)) for w in range(8, 129, 8)}
    return build(min(sizes, key=lambda w: abs(sizes[w] - target)))


def peer_nets(cfg: Config) -> dict[str, nn.Module]:
    """toydiff's preset UNet and the peers sized to its parameter count, each behind the model contract."""
    m = cfg.model
    toy = UNet(m)
    nets = {"toydiff": toy}
    target = n_params(toy)
    unet2d = diffusers_unet(m, target)
    if unet2d is not None:
        nets["diffusers"] = Peer(unet2d, m, diffusers=True)
    nets["contextunet"] = Peer(matched_reference(target, m.in_channels, m.image_size, m.num_classes,
                                                 cfg.diffusion.timesteps), m)
    return nets


@dataclasses.dataclass
class Trainee:
    """One net in training: its optimiser state, its planned steps (the end of its LR schedule), its seconds."""
    name: str
    model: nn.Module
    cfg: Config                               # the shared recipe with this net's own `steps`
    ema: AveragedModel = None
    optimizer: torch.optim.Optimizer = None
    scheduler: torch.optim.lr_scheduler.LRScheduler = None
    done: int = 0
    seconds: float = 0.0

    def __post_init__(self):
        tc = self.cfg.train
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(self.cfg))
        self.ema = AveragedModel(self.model, multi_avg_fn=ema_with_warmup(tc.ema_decay), use_buffers=True)


def train_step(tr: Trainee, images: torch.Tensor, labels: torch.Tensor, schedule: NoiseSchedule,
               device: torch.device) -> None:
    """One optimisation step of toydiff's recipe at step `tr.done`: the batch and the noise depend on the step
    alone, so every net sees the same ones."""
    tc, step = tr.cfg.train, tr.done
    gen = step_generator(tc.seed, 0, step, device)
    idx = torch.randint(0, len(images), (tc.batch_size,), generator=torch.Generator().manual_seed(tc.seed + step))
    loss = diffusion_loss(tr.model, schedule, images[idx].to(device), labels[idx].to(device), p_uncond=tc.p_uncond,
                          null=tr.cfg.model.num_classes, generator=gen, min_snr_gamma=tc.min_snr_gamma)
    tr.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(tr.model.parameters(), tc.grad_clip)
    tr.optimizer.step()
    tr.scheduler.step()
    tr.ema.update_parameters(tr.model)
    tr.done += 1


def seconds_per_step(tr: Trainee, images, labels, schedule, device, sync) -> float:
    """Seconds of one training step, timed PROBE_STEPS times after one untimed, on a copy of `tr`."""
    tr = Trainee(tr.name, copy.deepcopy(tr.model), tr.cfg)
    train_step(tr, images, labels, schedule, device)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(PROBE_STEPS):
        train_step(tr, images, labels, schedule, device)
    sync(device)
    return (time.perf_counter() - t0) / PROBE_STEPS


def train_side_by_side(cfg: Config, data, budget: float, device: torch.device, sync) -> list[Trainee]:
    """Every net of `peer_nets(cfg)` trained for about `budget` seconds, in turns (module docstring)."""
    images, labels = data.tensors
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    trainees = []
    for name, net in peer_nets(cfg).items():
        torch.manual_seed(cfg.train.seed)                      # the same init stream for every net
        net = net.to(device).train()
        per_step = seconds_per_step(Trainee(name, net, cfg), images, labels, schedule, device, sync)
        steps = max(cfg.train.warmup + 1, int(budget / per_step))
        own = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps))
        trainees.append(Trainee(name, net, own))
        print(f"    {name}: {n_params(net):,} parameters, {per_step:.3f} s/step in the probe -> {steps} steps",
              flush=True)
    while any(tr.done < tr.cfg.train.steps for tr in trainees):
        for tr in trainees:
            todo = min(PEERS_TURN, tr.cfg.train.steps - tr.done)
            sync(device)
            t0 = time.perf_counter()
            for _ in range(todo):
                train_step(tr, images, labels, schedule, device)
            sync(device)
            tr.seconds += time.perf_counter() - t0
    return trainees
