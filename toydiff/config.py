"""Configuration dataclasses. A run's `Config` is stored inside every checkpoint as a plain dict,
so sampling never needs the training flags typed again."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .errors import UserError


MAX_STEPS = 10 ** 9                     # sane upper bounds: a config read from a file is data from a stranger
MAX_BATCH = 2 ** 16
MAX_TIMESTEPS = 100_000
MAX_THREADS = 4096                      # torch threads (--threads, a checkpoint's `threads`)


@dataclass
class ModelConfig:
    in_channels: int = 1
    image_size: int = 8
    num_classes: int = 10                  # label `num_classes` is the null label (unconditional)
    width: int = 64                        # channels at full resolution
    channel_mult: tuple[int, ...] = (1, 2)  # one entry per resolution; len - 1 downsamplings
    num_res_blocks: int = 2                # residual blocks per resolution
    attention: bool = True                 # self-attention at the lowest resolution
    dropout: float = 0.0
    groups: int = 8                        # GroupNorm groups
    patch: int = 1                         # pixel-unshuffle stem: the UNet runs on (C p^2, H/p, W/p); 1 = off
    kind: str = "unet"                     # "unet": images (C, H, W); "mlp": vectors (D,) with D = in_channels
                                           # (width, num_res_blocks, dropout apply; the rest is the UNet's)

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of one sample: (C, H, W) for the UNet, (D,) = (in_channels,) for the MLP."""
        if self.kind == "mlp":
            return (self.in_channels,)
        return (self.in_channels, self.image_size, self.image_size)


MODEL_KINDS = ("unet", "mlp")


def fit_to_data(m: ModelConfig, shape: tuple[int, ...], num_classes: int) -> ModelConfig:
    """`m` with the data's sample shape and classes: (C, H, W) -> a UNet's in_channels and image_size, (D,) -> an
    MLP's in_channels. Raises UserError when the model kind does not take data of that shape."""
    if m.kind == "mlp" and len(shape) == 1:
        return dataclasses.replace(m, in_channels=shape[0], num_classes=num_classes)
    if m.kind == "unet" and len(shape) == 3 and shape[1] == shape[2]:
        return dataclasses.replace(m, in_channels=shape[0], image_size=shape[1], num_classes=num_classes)
    raise UserError(f"a {m.kind} model cannot denoise samples of shape {tuple(shape)} "
                    "(the UNet takes square images (C, H, W), the MLP vectors (D,))")


@dataclass
class DiffusionConfig:
    timesteps: int = 1000                  # T; t = 0 .. T-1 with 0 the least noise
    schedule: str = "cosine"               # "cosine" (Nichol & Dhariwal 2021) or "linear" (Ho et al. 2020)
    eta: float = 0.0                       # the DDIM eta sample.py uses for this run unless told (0 deterministic;
                                           # 1: fresh noise each step corrects a small net's errors, MNIST's choice)


@dataclass
class TrainConfig:
    dataset: str = "digits"
    data_dir: str | None = None
    steps: int = 4000
    batch_size: int = 128
    lr: float = 2e-3
    warmup: int = 200                      # linear LR warm-up steps, then cosine decay to lr / 10
    weight_decay: float = 0.0
    p_uncond: float = 0.1                  # label dropout: P(y -> null) in the loss
    min_snr_gamma: float = 0.0             # loss weight min(SNR_t, gamma) / SNR_t (Hang et al. 2023); 0 = plain MSE
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    amp: str = "none"                      # "none", "bf16" or "fp16" (autocast; CUDA)
    seed: int = 0
    ckpt_every: int = 1000                 # overwrite <run>/ckpt.pt every N steps
    keep_every: int = 0                    # also keep <run>/ckpt_step{N}.pt every N steps (0 = never)
    log_every: int = 50


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def to_dict(cfg: Config) -> dict:
    """Plain nested dict (lists, not tuples) -- safe for `torch.load(weights_only=True)`."""
    def plain(value):
        if isinstance(value, tuple):
            return list(value)
        return value
    return {f.name: {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, f.name)).items()}
            for f in dataclasses.fields(cfg)}


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "str | None": (str, type(None)),
          "tuple[int, ...]": (list, tuple)}


def _check_type(section: str, name: str, annotation: str, value) -> None:
    """A value read from a file has the field's declared type (a bool is not an int, 32.0 is not a width)."""
    ok = isinstance(value, _TYPES[annotation]) and (annotation == "bool" or not isinstance(value, bool))
    if ok and annotation == "tuple[int, ...]":
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if not ok:
        raise ConfigError(f"{section}.{name}", f"must be of type {annotation}, got {value!r}")


def from_dict(d: dict) -> Config:
    """Inverse of `to_dict`, for a dict read from a file: unknown keys (a checkpoint from another program) and
    values of the wrong type are a ConfigError; ranges are `check_config`'s and `check_model_config`'s."""
    if not isinstance(d, dict):
        raise ConfigError("config", f"must be a dict, got {type(d).__name__}")
    parts = {}
    for f in dataclasses.fields(Config):
        cls = {"model": ModelConfig, "diffusion": DiffusionConfig, "train": TrainConfig}[f.name]
        sub = d.get(f.name, {})
        if not isinstance(sub, dict):
            raise ConfigError(f.name, f"must be a dict, got {type(sub).__name__}")
        fields = {g.name: g for g in dataclasses.fields(cls)}
        unknown = set(sub) - set(fields)
        if unknown:
            raise UserError(f"config section {f.name!r} has unknown keys {sorted(unknown)}; "
                            "was it written by a newer toydiff?")
        for name, value in sub.items():
            _check_type(f.name, name, fields[name].type, value)
        sub = {k: tuple(v) if k == "channel_mult" else v for k, v in sub.items()}
        parts[f.name] = cls(**sub)
    return Config(**parts)


# Presets sized for each dataset: the digits preset trains on a 2-core CPU in minutes,
# the others on a laptop GPU (see README, "Real data").
PRESETS: dict[str, dict[str, dict]] = {
    "digits": dict(
        model=dict(in_channels=1, image_size=8, width=32, channel_mult=(1, 2), num_res_blocks=1),
        train=dict(steps=1300, batch_size=64, lr=2e-3, warmup=100, ckpt_every=500, keep_every=500),
    ),                                   # chosen by time-to-quality (README, "Speed"): batch 64 buys more updates
    "mnist": dict(                       # sized for a 2-core CPU (README, "MNIST"); a GPU can afford more
        model=dict(in_channels=1, image_size=28, width=32, channel_mult=(1, 2), num_res_blocks=1, patch=2),
        train=dict(steps=1750, batch_size=128, lr=3e-3, warmup=100, min_snr_gamma=5.0, ckpt_every=500,
                   keep_every=500),      # half the steps of the 3500 x lr 2e-3 preset (benchmarks.md, "MNIST")
        diffusion=dict(eta=1.0),         # unguided accuracy 92.5 % -> 95+ % with stochastic DDIM (benchmarks.md)
    ),
    "fashion-mnist": dict(
        model=dict(in_channels=1, image_size=28, width=64, channel_mult=(1, 2, 2), num_res_blocks=2),
        train=dict(steps=30000, batch_size=128, lr=1e-3, ckpt_every=2000),
    ),
    "toy2d": dict(                       # the exact 2D playground (toy2d.py): an MLP, <= 30 s on a 2-core CPU
        model=dict(kind="mlp", in_channels=2, width=64, num_res_blocks=3),
        train=dict(steps=2000, batch_size=256, lr=3e-3, warmup=100, ckpt_every=500, log_every=100),
    ),
    "cifar10": dict(
        model=dict(in_channels=3, image_size=32, width=96, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                   dropout=0.1),
        train=dict(steps=100000, batch_size=128, lr=2e-4, ckpt_every=5000),
    ),
}


def preset(dataset: str) -> Config:
    """The default Config for a dataset."""
    if dataset not in PRESETS:
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[dataset]
    return Config(model=ModelConfig(**p["model"]), diffusion=DiffusionConfig(**p.get("diffusion", {})),
                  train=TrainConfig(dataset=dataset, **p["train"]))


class ConfigError(UserError):
    """A config field out of its range: `field` names it (a front end may name its flag instead)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


def check_config(cfg: Config) -> None:
    """Refuse settings that cannot train, or that no laptop could hold (a config may come from a stranger's file).
    Model shapes are `check_model_config`'s. Raises ConfigError."""
    tc, dc = cfg.train, cfg.diffusion
    rules = [
        (1 <= tc.steps <= MAX_STEPS, "steps", f"must lie in 1..{MAX_STEPS}, got {tc.steps}"),
        (1 <= tc.batch_size <= MAX_BATCH, "batch_size", f"must lie in 1..{MAX_BATCH}, got {tc.batch_size}"),
        (0 < tc.lr < math.inf, "lr", f"must be a positive number, got {tc.lr}"),
        (0 <= tc.weight_decay < math.inf, "weight_decay", f"must be a finite number >= 0, got {tc.weight_decay}"),
        (0 <= tc.p_uncond < 1, "p_uncond", f"must lie in [0, 1), got {tc.p_uncond}"),
        (0 <= tc.min_snr_gamma < math.inf, "min_snr_gamma", f"must be a finite number >= 0, got {tc.min_snr_gamma}"),
        (0 <= tc.ema_decay < 1, "ema_decay", f"must lie in [0, 1), got {tc.ema_decay}"),
        (0 < tc.grad_clip < math.inf, "grad_clip", f"must be a positive number, got {tc.grad_clip}"),
        (tc.ckpt_every >= 1, "ckpt_every", f"must be >= 1, got {tc.ckpt_every}"),
        (tc.log_every >= 1, "log_every", f"must be >= 1, got {tc.log_every}"),
        (tc.keep_every >= 0, "keep_every", f"must be >= 0, got {tc.keep_every}"),
        (tc.warmup >= 0, "warmup", f"must be >= 0, got {tc.warmup}"),
        (tc.amp in ("none", "bf16", "fp16"), "amp", f"must be none, bf16 or fp16, got {tc.amp!r}"),
        (-2 ** 63 <= tc.seed < 2 ** 63, "seed", f"must fit in 64 bits, got {tc.seed}"),
        (tc.dataset in PRESETS, "dataset", f"must be one of {', '.join(PRESETS)}, got {tc.dataset!r}"),
        (2 <= dc.timesteps <= MAX_TIMESTEPS, "timesteps", f"must lie in 2..{MAX_TIMESTEPS}, got {dc.timesteps}"),
        (dc.schedule in ("cosine", "linear"), "schedule", f"must be cosine or linear, got {dc.schedule!r}"),
        (0 <= dc.eta <= 1, "eta", f"must lie in [0, 1], got {dc.eta}"),
    ]
    for ok, name, problem in rules:
        if not ok:
            raise ConfigError(name, problem)


def check_model_config(m: ModelConfig) -> None:
    """Refuse shapes the model cannot build, or that no laptop could hold, with the fix. Raises ConfigError."""
    if m.kind not in MODEL_KINDS:
        raise ConfigError("kind", f"must be one of {', '.join(MODEL_KINDS)}, got {m.kind!r}")
    if m.kind == "mlp":
        rules = [
            (1 <= m.in_channels <= 65536, "in_channels", f"(the vector length D) must lie in 1..65536, got "
                                                          f"{m.in_channels}"),
            (1 <= m.num_classes <= 100_000, "num_classes", f"must lie in 1..100000, got {m.num_classes}"),
            (1 <= m.width <= 8192, "width", f"must lie in 1..8192, got {m.width}"),
            (1 <= m.num_res_blocks <= 64, "num_res_blocks", f"must lie in 1..64, got {m.num_res_blocks}"),
            (0 <= m.dropout < 1, "dropout", f"must lie in [0, 1), got {m.dropout}"),
        ]
        for ok, name, problem in rules:
            if not ok:
                raise ConfigError(name, problem)
        return
    rules = [
        (1 <= m.in_channels <= 16, "in_channels", f"must lie in 1..16, got {m.in_channels}"),
        (1 <= m.image_size <= 1024, "image_size", f"must lie in 1..1024, got {m.image_size}"),
        (1 <= m.num_classes <= 100_000, "num_classes", f"must lie in 1..100000, got {m.num_classes}"),
        (1 <= m.width <= 1024, "width", f"must lie in 1..1024, got {m.width}"),
        (1 <= len(m.channel_mult) <= 8 and all(1 <= c <= 16 for c in m.channel_mult), "channel_mult",
         f"must be 1 to 8 multipliers in 1..16, got {tuple(m.channel_mult)}"),
        (1 <= m.num_res_blocks <= 16, "num_res_blocks", f"must lie in 1..16, got {m.num_res_blocks}"),
        (0 <= m.dropout < 1, "dropout", f"must lie in [0, 1), got {m.dropout}"),
        (1 <= m.groups <= 1024, "groups", f"must lie in 1..1024, got {m.groups}"),
        (1 <= m.patch <= 8, "patch", f"must lie in 1..8, got {m.patch}"),
    ]
    for ok, name, problem in rules:
        if not ok:
            raise ConfigError(name, problem)
    factor = m.patch * 2 ** (len(m.channel_mult) - 1)
    if m.image_size % factor:
        raise ConfigError("image_size", f"{m.image_size} is not divisible by {factor} (patch {m.patch}, channel_mult "
                          f"{tuple(m.channel_mult)} downsamples {len(m.channel_mult) - 1} times); use fewer levels")
    for mult in (1, *m.channel_mult):                      # 1: the stem's width itself
        if (m.width * mult) % m.groups:
            raise ConfigError("width", f"{m.width} x {mult} is not divisible by {m.groups} GroupNorm groups; "
                              "choose a width that is a multiple of the groups")
    lowest = m.image_size // factor
    if m.width // m.groups * lowest ** 2 < 2:              # a group of one value normalises to 0 whatever the input
        raise ConfigError("patch", f"{m.patch} leaves {lowest}x{lowest} pixels at the lowest level with "
                          f"{m.width // m.groups} channel per GroupNorm group: the norm would erase every feature "
                          "there; use a smaller patch, fewer channel_mult levels, or a wider width")
