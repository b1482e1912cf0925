"""Datasets: digits from sklearn, and the real torchvision loaders on tiny files in torchvision's layout."""

import hashlib
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from torchvision import datasets

from toydiff.data import load_dataset
from toydiff.errors import UserError


def test_digits_is_a_fixed_disjoint_split_in_unit_range():
    train, info = load_dataset("digits", train=True)
    test, _ = load_dataset("digits", train=False)
    x, y = train.tensors
    assert info.shape == (1, 8, 8) and info.num_classes == 10 and info.class_names[3] == "3"
    assert x.shape == (1437, 1, 8, 8) and len(test) == 360 and x.dtype == torch.float32 and y.dtype == torch.long
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(x, load_dataset("digits", train=True)[0].tensors[0])          # deterministic
    rows = {tuple(r) for r in x.flatten(1).tolist()}
    shared = sum(tuple(r) in rows for r in test.tensors[0].flatten(1).tolist())
    assert shared <= 2                             # sklearn's digits hold a couple of exact duplicates at most
    assert torch.bincount(y, minlength=10).min() > 100                                 # stratified


def write_idx(folder, prefix, images, labels):
    """MNIST's IDX format: big-endian magic 2051 (images) / 2049 (labels), the sizes, then the bytes."""
    os.makedirs(folder, exist_ok=True)
    n, h, w = images.shape
    with open(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">iiii", 2051, n, h, w) + images.astype(np.uint8).tobytes())
    with open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">ii", 2049, n) + labels.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_layout_loads_through_torchvision(tmp_path, name, folder):
    rng = np.random.default_rng(0)
    raw = tmp_path / folder / "raw"
    write_idx(raw, "train", rng.integers(0, 256, (12, 28, 28)), np.arange(12) % 10)
    write_idx(raw, "t10k", rng.integers(0, 256, (5, 28, 28)), np.arange(5))
    train, info = load_dataset(name, root=str(tmp_path), train=True)
    test, _ = load_dataset(name, root=str(tmp_path), train=False)
    x, y = train.tensors
    assert x.shape == (12, 1, 28, 28) and len(test) == 5 and info.shape == (1, 28, 28)
    assert info.num_classes == 10 and x.min() >= -1 and x.max() <= 1
    assert y.tolist() == (np.arange(12) % 10).tolist()


def cifar_files(root, monkeypatch, per_batch: int = 4):
    """Tiny CIFAR-10 python batches in torchvision's layout under `root` (labels 0, 1, 2, 9, ...), with
    torchvision's md5 table pointed at them."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    md5 = {}
    for name in names:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                         "labels": [[0, 1, 2, 9][i % 4] for i in range(per_batch)]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"]}, f)
    for name in names + ["batches.meta"]:
        md5[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    # torchvision checks the published md5 of each file; point the check at our tiny files' md5 instead
    monkeypatch.setattr(datasets.CIFAR10, "train_list", [[n, md5[n]] for n in names[:5]])
    monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(datasets.CIFAR10, "meta", {**datasets.CIFAR10.meta, "md5": md5["batches.meta"]})


def test_cifar10_layout_loads_through_torchvision(tmp_path, monkeypatch):
    cifar_files(tmp_path, monkeypatch)
    train, info = load_dataset("cifar10", root=str(tmp_path), train=True)
    x, y = train.tensors
    assert x.shape == (20, 3, 32, 32) and info.shape == (3, 32, 32) and info.class_names[-1] == "truck"
    assert y.tolist()[:4] == [0, 1, 2, 9]


def test_missing_files_name_the_folder_and_files(tmp_path):
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte.*MNIST.raw.*--download"):
        load_dataset("mnist", root=str(tmp_path))
    with pytest.raises(UserError, match="does not exist"):
        load_dataset("cifar10", root=str(tmp_path / "nowhere"))


def test_corrupt_files_are_a_user_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw, "train", np.zeros((3, 28, 28)), np.zeros(3))
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(UserError, match="mnist"):
        load_dataset("mnist", root=str(tmp_path))


def test_unknown_dataset_is_a_user_error():
    with pytest.raises(UserError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
