"""samples.npz: the one writer and the one reader of sampled sets (no pickle: `np.load(allow_pickle=False)`).

Per sample (N rows, the sets one after another):
    images (N, C, H, W) float32 in [0, 1]       labels (N,) int64, positive class, -1 for none
    negatives (N, J) int64, -1 for none         negative_weights (N, J) float32, normalised a_j
    scales (N,) float32, s                      sets (N,) str, the set's name       seeds (N,) int64
and `settings`, a JSON string: what made the file (checkpoint, sampler, ...) and `sets`, one entry per set in
file order: {"name", "scale", "neg_rate_from"}. `neg_rate_from` names the set whose negatives this set's
negative-class rate is measured against: itself when it has negatives; for an unguided or CFG set drawn on the
same labels and seeds as a negative set, that set (the rate without the push). The layout is stored, not guessed.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass

import numpy as np
import torch

from .errors import UserError
from .files import atomic_write
from .guidance import Guided

KEYS = ("images", "labels", "negatives", "negative_weights", "scales", "sets", "seeds", "settings")


@dataclass
class SampleSet:
    """One sampled set: its name, the guided denoiser that drew it, and where its neg-rate baseline comes from."""
    name: str
    guided: Guided
    neg_rate_from: str | None = None     # None: this set's own negatives


def write(path: str, sets: list[tuple[SampleSet, torch.Tensor]], seeds: list[int], settings: dict) -> None:
    """Write (set, images in [-1, 1] (N, C, H, W)) pairs, all drawn from `seeds`, atomically."""
    J = max(len(s.guided.ref) for s, _ in sets)
    cols = {k: [] for k in KEYS[:-1]}
    for s, images in sets:
        n, g = len(images), s.guided
        null = g.model.cfg.num_classes
        cols["images"].append(((images.cpu().float() + 1) / 2).numpy())
        cols["labels"].append(torch.where(g.pos == null, -1, g.pos).cpu().numpy())
        neg, wts = -np.ones((n, J), np.int64), np.zeros((n, J), np.float32)
        k = g.negative_classes().cpu().numpy().T                                 # (N, J_s)
        neg[:, :k.shape[1]], wts[:, :k.shape[1]] = k, np.where(k >= 0, g.ref_weights.numpy(), 0)
        cols["negatives"].append(neg)
        cols["negative_weights"].append(wts)
        cols["scales"].append(np.full(n, g.scale, np.float32))
        cols["sets"].append(np.array([s.name] * n))
        cols["seeds"].append(np.array(seeds, np.int64))
    arrays = {k: np.concatenate(v) for k, v in cols.items()}
    settings = {**settings, "sets": [dict(name=s.name, scale=s.guided.scale, neg_rate_from=s.neg_rate_from or s.name)
                                     for s, _ in sets]}
    atomic_write(path, lambda f: np.savez(f, **arrays, settings=np.array(json.dumps(settings))))


@dataclass
class Samples:
    """A checked samples.npz: the arrays of the module docstring, `settings` parsed."""
    arrays: dict[str, np.ndarray]
    settings: dict

    @property
    def names(self) -> list[str]:
        """Set names in file order."""
        return list(dict.fromkeys(self.arrays["sets"].tolist()))

    def of(self, name: str, key: str) -> np.ndarray:
        """Array `key` restricted to the rows of set `name`."""
        return self.arrays[key][self.arrays["sets"] == name]

    def images(self, name: str) -> torch.Tensor:
        """Set `name`'s images in [-1, 1]."""
        return torch.from_numpy(self.of(name, "images")).float() * 2 - 1

    def neg_rate_from(self, name: str) -> str:
        """The set whose negatives score `name`'s negative-class rate (stored by the writer; older files: itself)."""
        info = {s.get("name"): s for s in self.settings.get("sets", []) if isinstance(s, dict)}
        other = info.get(name, {}).get("neg_rate_from", name)
        if other not in self.names or not np.array_equal(self.of(other, "labels"), self.of(name, "labels")):
            return name
        return other

    def unconditional(self) -> str | None:
        """The unguided unconditional set (every label -1, no negatives, s = 1), if the file holds one."""
        for name in self.names:
            if ((self.of(name, "labels") < 0).all() and (self.of(name, "negatives") < 0).all()
                    and ("scales" not in self.arrays or (self.of(name, "scales") == 1).all())):
                return name
        return None


def read(path: str, *, shape: tuple[int, int, int] | None = None, num_classes: int | None = None) -> Samples:
    """Read and check a samples.npz, every array of the module docstring (those after `sets` may be missing in
    older files). Any missing key, wrong shape or out-of-range value is a one-line UserError."""
    if not os.path.isfile(path):
        raise UserError(f"{path} not found; write one with `python sample.py` (samples.npz)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(f"cannot read {path} as a samples.npz ({type(err).__name__}); "
                        "write one with `python sample.py`") from None
    missing = [k for k in ("images", "labels", "negatives", "sets") if k not in arrays]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: not a toydiff samples.npz (see README, samples.npz)")
    images, labels, negatives, sets = (arrays[k] for k in ("images", "labels", "negatives", "sets"))
    if images.ndim != 4:
        raise UserError(f"{path}: images must be (N, C, H, W), got shape {images.shape}")
    n = len(images)
    if n == 0:
        raise UserError(f"{path} holds no images; write one with `python sample.py`")
    if shape is not None and tuple(images.shape[1:]) != tuple(shape):
        raise UserError(f"{path}: images are {tuple(images.shape[1:])} but the judge expects {tuple(shape)}")
    if labels.shape != (n,) or sets.shape != (n,) or negatives.ndim != 2 or len(negatives) != n:
        raise UserError(f"{path}: labels {labels.shape}, sets {sets.shape} and negatives {negatives.shape} "
                        f"must be (N,), (N,) and (N, J) with N = {n} images")
    if not np.issubdtype(labels.dtype, np.integer) or not np.issubdtype(negatives.dtype, np.integer):
        raise UserError(f"{path}: labels and negatives must be integers, got {labels.dtype} and {negatives.dtype}")
    for key, shape, kind in (("negative_weights", negatives.shape, np.floating), ("scales", (n,), np.floating),
                             ("seeds", (n,), np.integer)):           # optional (older files), checked when there
        a = arrays.get(key)
        if a is not None and (a.shape != shape or not np.issubdtype(a.dtype, kind)
                              or (kind is np.floating and not np.isfinite(a).all())):
            raise UserError(f"{path}: {key} must be {'finite floats' if kind is np.floating else 'integers'} of "
                            f"shape {shape}, one row per image; got {a.dtype} {a.shape}")
    if not np.issubdtype(images.dtype, np.floating) or not np.isfinite(images).all():
        raise UserError(f"{path}: images must be finite floats in [0, 1]")
    if images.size and (images.min() < -1e-6 or images.max() > 1 + 1e-6):
        raise UserError(f"{path}: images must lie in [0, 1], found [{images.min():.3g}, {images.max():.3g}]")
    if num_classes is not None and (labels.max(initial=-1) >= num_classes or negatives.max(initial=-1) >= num_classes
                                    or labels.min(initial=-1) < -1 or negatives.min(initial=-1) < -1):
        raise UserError(f"{path}: labels and negatives must lie in -1..{num_classes - 1}")
    arrays["sets"] = sets.astype(str)
    try:
        settings = json.loads(str(arrays.pop("settings"))) if "settings" in arrays else {}
    except json.JSONDecodeError:
        raise UserError(f"{path}: its settings are not JSON; write the file with `python sample.py`") from None
    return Samples(arrays, settings if isinstance(settings, dict) else {})
