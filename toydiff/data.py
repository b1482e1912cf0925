"""Datasets as in-memory tensors in [-1, 1], shape (N, C, H, W) (images) or (N, D) (vectors), labels int64.

`digits` is sklearn's 8x8 handwritten digits (shipped with scikit-learn: no download); `mnist`,
`fashion-mnist` and `cifar10` are read by torchvision from `root` (downloaded there with `download=True`);
`toy2d` is points in R^2 drawn (seeded) from the known Gaussian mixture of `toy2d.py`, the exact playground.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset

from .errors import UserError

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "toy2d")
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    shape: tuple[int, ...]          # one sample: (C, H, W) images, (D,) vectors
    num_classes: int
    class_names: tuple[str, ...]


def _to_unit_range(x: torch.Tensor, max_value: float) -> torch.Tensor:
    """[0, max_value] -> [-1, 1], float32."""
    return x.float().div(max_value).mul(2).sub(1)


def _digits(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()                                        # images (1797, 8, 8) in 0..16
    x_tr, x_te, y_tr, y_te = train_test_split(
        d.images, d.target, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=d.target)
    x, y = (x_tr, y_tr) if train else (x_te, y_te)
    return _to_unit_range(torch.from_numpy(x).unsqueeze(1), 16.0), torch.from_numpy(y).long()


TOY2D_SIZE = {True: 20000, False: 5000}     # points per split
TOY2D_SEED = {True: 0, False: 1}            # the two splits are independent draws


def _toy2d(train: bool) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    from .toy2d import toy2d

    mix = toy2d()
    x, m = mix.sample(TOY2D_SIZE[train], torch.Generator().manual_seed(TOY2D_SEED[train]))
    return x.float(), mix.classes[m], mix.class_names


def _torchvision(name: str, root: str, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor, list]:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]
    try:
        ds = cls(root=root, train=train, download=download)
    except RuntimeError as err:
        if "not found" in str(err).lower():
            hint = "pass --download to fetch them" if not download else "check the network and the folder"
            raise UserError(f"{name} not found or corrupted in {os.path.abspath(root)}: expected "
                            f"{_expected_files(name, root)}; {hint}") from None
        raise _corrupt(name, root, err, download) from None
    except (ValueError, AssertionError, EOFError, OSError, pickle.UnpicklingError, KeyError) as err:
        raise _corrupt(name, root, err, download) from None
    if name == "cifar10":
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2)    # (N, 32, 32, 3) uint8 -> (N, 3, 32, 32)
    else:
        x = ds.data.unsqueeze(1)                             # (N, 28, 28) uint8 -> (N, 1, 28, 28)
    names = [c.split(" - ")[0] for c in ds.classes]          # MNIST's "0 - zero" -> "0": labels that fit a plot
    return _to_unit_range(x, 255.0), torch.as_tensor(ds.targets, dtype=torch.long), names


def _corrupt(name: str, root: str, err: Exception, download: bool) -> UserError:
    detail = (str(err).strip().splitlines() or [""])[0][:120]
    if download:                                  # offline, or the files came down damaged
        return UserError(f"could not download or read {name} into {os.path.abspath(root)} ({type(err).__name__}: "
                         f"{detail}); check the network, or copy {_expected_files(name, root)} there by hand")
    return UserError(f"could not read {name} from {os.path.abspath(root)} ({type(err).__name__}: {detail}); "
                     "the files are corrupt: delete them and pass --download")


def _expected_files(name: str, root: str) -> str:
    from torchvision import datasets

    if name == "cifar10":
        c = datasets.CIFAR10
        files = [f for f, _ in c.train_list + c.test_list] + [c.meta["filename"]]
        folder = os.path.join(root, c.base_folder)
    else:
        c = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
        files = [os.path.splitext(os.path.basename(url))[0] for url, _ in c.resources]
        folder = os.path.join(root, c.__name__, "raw")
    return f"{', '.join(files)} in {folder}"


def class_prior(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K,) float64 class frequencies of `labels` (N,): the prior a training split gives each class."""
    counts = torch.bincount(torch.as_tensor(labels).long().cpu(), minlength=num_classes).double()
    return counts / counts.sum()


def load_dataset(name: str, root: str | None = None, train: bool = True,
                 download: bool = False) -> tuple[TensorDataset, DatasetInfo]:
    """Load a dataset split as a TensorDataset (images in [-1, 1], (N, C, H, W); labels int64) and its info.

    `root` is the torchvision data folder (default ./data); ignored for `digits` and `toy2d`.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "digits":
        x, y = _digits(train)
        class_names = [str(i) for i in range(10)]
    elif name == "toy2d":
        x, y, class_names = _toy2d(train)
    else:
        root = root or "data"
        if os.path.exists(root) and not os.path.isdir(root):
            raise UserError(f"data folder {os.path.abspath(root)} is a file, not a folder; pass --data-dir DIR")
        if not download and not os.path.isdir(root):
            raise UserError(f"data folder {os.path.abspath(root)} does not exist; pass --data-dir DIR holding "
                            f"{_expected_files(name, '<DIR>')}, or --download")
        x, y, class_names = _torchvision(name, root, train, download)
    if len(x) == 0:
        raise UserError(f"{name} in {root} holds no images")
    if len(y) != len(x):
        raise UserError(f"{name} in {root} has {len(x)} images but {len(y)} labels: the files are corrupt or from "
                        "two different downloads; delete them and pass --download")
    info = DatasetInfo(name=name, shape=tuple(x.shape[1:]), num_classes=len(class_names),
                       class_names=tuple(class_names))
    if y.min() < 0 or y.max() >= info.num_classes:
        raise UserError(f"{name} in {root} has labels outside 0..{info.num_classes - 1}: the files are corrupt")
    return TensorDataset(x, y), info
