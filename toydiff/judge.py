"""The judge: a small CNN trained on the REAL training split, independent of the diffusion model.

It decides which class a generated image shows (class accuracy, negative-class rate) and supplies the
penultimate features for classifier-FID and diversity (`metrics.py`). It never sees generated images in
training, and it shares no code or weights with the UNet.

    judge = judge_for("runs/digits", dataset="digits")      # loads runs/digits/judge.pt, or trains and saves it
    predict(judge, images)                                  # (N,) classes; images in [-1, 1]
    judge.features(images)                                  # (N, D) penultimate features
    judge.test_accuracy                                     # accuracy on the real test split, measured at training

judge.pt is a plain dict of tensors and Python values ({"format": "toydiff", "version", "kind": "judge",
"config", "state", "test_accuracy", ...}), written atomically by `checkpoint.save` and read back with
`torch.load(weights_only=True)`: like the diffusion checkpoints it is data, never code.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint
from .errors import UserError
from .runtime import threads

JUDGE_FILE = "judge.pt"


@dataclass
class JudgeConfig:
    in_channels: int = 1
    image_size: int = 8
    num_classes: int = 10
    width: int = 24                 # channels of the first conv stage; doubled after each pooling
    feature_dim: int = 128          # D, the penultimate (feature) width
    dropout: float = 0.2
    # training
    epochs: int = 30                # passes over the training split (digits); larger sets get fewer, see `config_for`
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    shift: int = 1                  # augmentation: random translation by up to `shift` pixels


def config_for(dataset: str, shape: tuple[int, int, int], num_classes: int) -> JudgeConfig:
    """Sized so the judge trains in seconds on digits and in a few CPU minutes on the 28x28 / 32x32 sets."""
    c, h, _ = shape
    if dataset == "digits":
        return JudgeConfig(in_channels=c, image_size=h, num_classes=num_classes)
    return JudgeConfig(in_channels=c, image_size=h, num_classes=num_classes, width=32, feature_dim=256,
                       epochs=3 if c == 1 else 10, batch_size=128, lr=1e-3, shift=2)


class Judge(nn.Module):
    """conv stages (conv-BN-ReLU x2, then 2x2 max-pool) -> adaptive avg-pool to 2x2 -> Linear -> ReLU = features
    (B, D) -> dropout -> Linear = logits (B, K). Input: images in [-1, 1], (B, C, H, W)."""

    def __init__(self, cfg: JudgeConfig):
        super().__init__()
        self.cfg = cfg
        self.test_accuracy: float = float("nan")      # real test-split accuracy, set by `train_judge` / `load_judge`
        self.train_seconds: float = float("nan")
        stages, c_in, c = [], cfg.in_channels, cfg.width
        n_pool = 1 if cfg.image_size < 16 else 2        # 8x8 -> 4x4;  28x28 -> 7x7;  32x32 -> 8x8
        for i in range(n_pool + 1):
            layers = [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                      nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
            if i < n_pool:
                layers.append(nn.MaxPool2d(2))
            stages += layers
            c_in, c = c, 2 * c
        self.body = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(2), nn.Flatten())       # (B, 4 c_last)
        self.feat = nn.Sequential(nn.Linear(4 * c_in, cfg.feature_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.feature_dim, cfg.num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, D) of images in [-1, 1]."""
        return self.feat(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K)."""
        return self.head(self.features(x))


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def _batched(fn, images: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    if images.dim() != 4:
        raise UserError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    outs = [fn(images[i:i + batch_size].to(device, torch.float32)).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0)


def predict(judge: Judge, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """(N,) int64 predicted classes for images in [-1, 1], (N, C, H, W); on the CPU."""
    judge.eval()
    out = _batched(lambda x: judge(x).argmax(1), images, batch_size, _device_of(judge))
    return out.long() if out.numel() else torch.empty(0, dtype=torch.long)


def probabilities(judge: Judge, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """(N, K) the judge's p(c | x) for images in [-1, 1], (N, C, H, W); on the CPU."""
    judge.eval()
    with torch.no_grad():
        return _batched(lambda x: torch.softmax(judge(x).float(), 1), images, batch_size, _device_of(judge))


def features(judge: Judge, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """(N, D) float32 penultimate features for images in [-1, 1]; on the CPU."""
    judge.eval()
    out = _batched(judge.features, images, batch_size, _device_of(judge))
    return out if out.numel() else torch.empty(0, judge.cfg.feature_dim)


def accuracy(judge: Judge, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of `images` the judge assigns to `labels`."""
    return (predict(judge, images) == labels.cpu()).float().mean().item()


def _shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to `max_shift` pixels per image (pad with the background -1, then crop)."""
    if max_shift == 0:
        return x
    B, C, H, W = x.shape
    m = max_shift
    padded = F.pad(x, [m] * 4, value=-1.0)                                   # (B, C, H + 2m, W + 2m)
    dy, dx = torch.randint(0, 2 * m + 1, (2, B, 1, 1), generator=generator)  # per-image offsets
    rows = (dy + torch.arange(H).view(1, H, 1)).expand(B, H, W)              # (B, H, W)
    cols = (dx + torch.arange(W).view(1, 1, W)).expand(B, H, W)
    flat = padded.flatten(2)                                                 # (B, C, (H + 2m)(W + 2m))
    index = (rows * (W + 2 * m) + cols).flatten(1)[:, None].expand(B, C, H * W)
    return flat.gather(2, index).view(B, C, H, W)


def train_judge(cfg: JudgeConfig, train_x: torch.Tensor, train_y: torch.Tensor, *,
                test_x: torch.Tensor,           # real test images in [-1, 1], for the reported accuracy
                test_y: torch.Tensor,
                device: str | torch.device = "cpu",
                seed: int = 0,
                max_steps: int | None = None,   # cap on optimiser steps (tests); None = cfg.epochs passes
                verbose: bool = True,
                ) -> Judge:
    """AdamW + one-cycle LR, cross-entropy, shift augmentation; returns the judge in eval mode with
    `test_accuracy` measured on (test_x, test_y)."""
    device = torch.device(device)
    with threads(1 if device.type == "cpu" and cfg.image_size < 16 else None):
        judge, step = _fit(cfg, train_x, train_y, device=device, seed=seed, max_steps=max_steps)
        judge.test_accuracy = accuracy(judge, test_x, test_y)
    if verbose:
        print(f"judge: trained {step} steps on {len(train_x)} real images in {judge.train_seconds:.1f} s; "
              f"test accuracy {judge.test_accuracy:.2%} on {len(test_x)} real test images")
    return judge


def _fit(cfg: JudgeConfig, train_x: torch.Tensor, train_y: torch.Tensor, *, device: torch.device, seed: int,
         max_steps: int | None) -> tuple[Judge, int]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    judge = Judge(cfg).to(device)
    n = len(train_x)
    per_epoch = max(1, n // cfg.batch_size)
    total = cfg.epochs * per_epoch if max_steps is None else max(1, min(max_steps, cfg.epochs * per_epoch))
    opt = torch.optim.AdamW(judge.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.2)
             if total >= 10 else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))   # a few test steps
    t0, step = time.time(), 0
    judge.train()
    while step < total:
        perm = torch.randperm(n, generator=gen)
        for k in range(per_epoch):
            if step >= total:
                break
            idx = perm[k * cfg.batch_size:(k + 1) * cfg.batch_size]
            x = _shift(train_x[idx], cfg.shift, gen).to(device)
            loss = F.cross_entropy(judge(x), train_y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    judge.eval().requires_grad_(False)
    judge.train_seconds = time.time() - t0
    return judge, step


def save_judge(judge: Judge, path: str, *, dataset: str) -> None:
    """Atomic, weights_only-safe: config and measured test accuracy travel inside the file."""
    checkpoint.save({"kind": "judge", "dataset": dataset, "config": dataclasses.asdict(judge.cfg),
                     "state": judge.state_dict(), "test_accuracy": float(judge.test_accuracy),
                     "train_seconds": float(getattr(judge, "train_seconds", float("nan")))}, path)


def load_judge(path: str, *, dataset: str | None = None, device: str | torch.device = "cpu") -> Judge:
    """Read judge.pt through `checkpoint.read` (weights_only=True); every failure is a one-line UserError."""
    blob = checkpoint.read(path, what="judge", fix="delete it and the judge is retrained")
    if blob.get("kind") != "judge":
        raise UserError(f"{path} is not a toydiff judge; delete it and the judge is retrained")
    if dataset is not None and blob.get("dataset") != dataset:
        raise UserError(f"{path} judges {blob.get('dataset')!r}, not {dataset!r}; delete it to retrain")
    try:
        judge = Judge(JudgeConfig(**blob["config"]))
        judge.load_state_dict(blob["state"])
    except (TypeError, KeyError, RuntimeError) as err:
        raise UserError(f"{path}: judge weights do not match its config ({type(err).__name__}); "
                        "delete it to retrain") from None
    judge.test_accuracy = float(blob["test_accuracy"])
    judge.train_seconds = float(blob.get("train_seconds", float("nan")))
    return judge.to(device).eval().requires_grad_(False)


def judge_for(run_dir: str | None, *, dataset: str, data_dir: str | None = None, device="cpu",
              seed: int = 0, verbose: bool = True, name: str = JUDGE_FILE) -> Judge:
    """The judge for `dataset`: <run_dir>/<name> if present, else trained on the real training split,
    scored on the real test split, and saved there (run_dir None: not cached). Returned in eval mode.
    `name`: judge.pt in a run folder, `checkpoint.judge_name` beside a shipped weights file."""
    from .data import load_dataset

    path = os.path.join(run_dir, name) if run_dir is not None else None
    if path is not None and os.path.isfile(path):
        judge = load_judge(path, dataset=dataset, device=device)
        if verbose:
            print(f"judge: loaded {path} (test accuracy {judge.test_accuracy:.2%})")
        return judge
    train_set, info = load_dataset(dataset, data_dir, train=True)
    test_set, _ = load_dataset(dataset, data_dir, train=False)
    cfg = config_for(dataset, info.shape, info.num_classes)
    judge = train_judge(cfg, *train_set.tensors, test_x=test_set.tensors[0], test_y=test_set.tensors[1],
                        device=device, seed=seed, verbose=verbose)
    if path is not None:
        save_judge(judge, path, dataset=dataset)
        if verbose:
            print(f"judge: saved {path}")
    return judge
