"""Sample-quality metrics measured by the independent judge (`judge.py`), never by the diffusion model.

For one set of samples (images, requested labels, negatives):
    accuracy        share classified as the requested class (over samples with a label >= 0)
    neg_rate        share classified as any of that sample's negative classes (over samples with one)
    frequencies     share of samples per predicted class (unconditional and removal sets)
    target          the class histogram the set asks for: per sample, all mass on its class, or for a sample without
                    a class (-1) the training prior with its removed classes zeroed and renormalised; averaged
    tv, kl          total variation 1/2 sum |frequencies - target| and KL(target || frequencies), the frequencies
                    smoothed by half a count per class (so a class never drawn costs a finite amount)
    tv_model        for a set with negatives, in a file that also holds the unguided unconditional set on the same
                    seeds: the TV against the MODEL's own p(x | not k), that set's judged histogram with the set's
                    negatives zeroed and renormalised (what removal can reach at best, whatever the model's prior)
    fid             classifier-FID: Frechet distance between Gaussians fitted to the judge's penultimate
                    features of the samples and of the REAL test split (Heusel et al. 2017, eq. 6, with the
                    judge in place of Inception):  ||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2))
    fid_class       the same per requested class against that class's real test images; the mean is reported
    diversity       mean pairwise feature distance within a requested class, divided by the same on the real
                    test images of that class, averaged over classes (1 = as varied as real data; < 1 = collapse)

FID is biased upwards at small N (here 20-200 samples against ~36-360 real ones), so compare numbers only at
equal N; the `real` reference row (real TRAINING images scored against the test split at the same N) is the floor.

Pure maths on the judge's predictions and features, plus `evaluate_samples` for a whole `samples.Samples`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .judge import Judge, features, predict, probabilities
from .runtime import threads
from .samples import Samples


# ---------------------------------------------------------------- label metrics (pure functions of predictions)

def class_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples with labels >= 0 predicted as their label; nan when no sample has a label."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    has = labels >= 0
    return float((pred[has] == labels[has]).mean()) if has.any() else math.nan


def negative_rate(pred: np.ndarray, negatives: np.ndarray) -> float:
    """Share of samples (that have at least one negative) predicted as ANY of their negatives; negatives is
    (N, J) with -1 for none. nan when no sample has a negative."""
    pred, negatives = np.asarray(pred), per_sample(negatives, len(pred))
    has = (negatives >= 0).any(1)
    if not has.any():
        return math.nan
    hit = (negatives == pred[:, None]) & (negatives >= 0)
    return float(hit.any(1)[has].mean())


def per_sample(a, n: int) -> np.ndarray:
    """(N, J) rows of `a`, one per sample: reshape(N, -1), which cannot infer J when N = 0."""
    a = np.asarray(a)
    return a.reshape(n, -1) if n else a.reshape(0, a.shape[-1] if a.ndim > 1 else 1)


def class_frequencies(pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K,) share of samples predicted as each class."""
    pred = np.asarray(pred)
    return np.bincount(pred, minlength=num_classes)[:num_classes] / max(1, len(pred))


# ---------------------------------------------------------------- feature metrics

def gaussian_stats(feats: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D), float64 (unbiased; zero covariance for a single sample)."""
    f = np.asarray(feats, dtype=np.float64)
    mu = f.mean(0)
    d = f - mu
    cov = d.T @ d / (len(f) - 1) if len(f) > 1 else np.zeros((f.shape[1], f.shape[1]))
    return mu, cov


def _eigvalsh(a: torch.Tensor) -> torch.Tensor:
    return torch.linalg.eigvalsh((a + a.T) / 2)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """d^2 = ||mu1 - mu2||^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2)), in float64.

    tr((C1 C2)^(1/2)) = tr((S C2 S)^(1/2)) with S = C1^(1/2): S C2 S is symmetric PSD and similar to C1 C2,
    so both square roots come from a symmetric eigendecomposition (torch.linalg.eigh; no scipy sqrtm, no
    complex round-off). Negative round-off eigenvalues are clipped to 0."""
    mu1, mu2, cov1, cov2 = (torch.as_tensor(np.asarray(a), dtype=torch.float64) for a in (mu1, mu2, cov1, cov2))
    with threads(1):                                  # a D x D eigh is far faster on one thread than on a busy two
        w, v = torch.linalg.eigh((cov1 + cov1.T) / 2)
        s = (v * w.clamp_min(0).sqrt()) @ v.T         # C1^(1/2)
        tr_sqrt = _eigvalsh(s @ cov2 @ s).clamp_min(0).sqrt().sum()
    d2 = float(((mu1 - mu2) ** 2).sum() + cov1.trace() + cov2.trace() - 2 * tr_sqrt)
    return max(d2, 0.0)


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """nan when either side has no points (a class the real split lacks)."""
    if not len(f1) or not len(f2):
        return math.nan
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))


def mean_pairwise_distance(feats: np.ndarray) -> float:
    """Mean Euclidean distance over distinct pairs; nan for fewer than two points."""
    f = torch.as_tensor(np.asarray(feats), dtype=torch.float64)
    if len(f) < 2:
        return math.nan
    with threads(1):
        return float(torch.pdist(f).mean())


# ---------------------------------------------------------------- the real reference

@dataclass
class RealReference:
    """Judge features of the real test split (and of an equal-size real training draw, the FID floor)."""
    feats: np.ndarray            # (M, D)
    labels: np.ndarray           # (M,)
    num_classes: int
    train_feats: np.ndarray      # (M', D) real training images, for the `real` reference row
    train_labels: np.ndarray
    prior: np.ndarray            # (K,) class frequencies of the whole training split

    def of_class(self, c: int) -> np.ndarray:
        return self.feats[self.labels == c]

    def diversity(self, c: int | None) -> float:
        return mean_pairwise_distance(self.feats if c is None else self.of_class(c))


def real_reference(judge: Judge, *, dataset: str, data_dir: str | None = None, max_train: int = 2000,
                   seed: int = 0) -> RealReference:
    """Features of the real test split, plus up to `max_train` real training images (fixed seed)."""
    from .data import class_prior, load_dataset

    test, info = load_dataset(dataset, data_dir, train=False)
    train, _ = load_dataset(dataset, data_dir, train=True)
    x, y = test.tensors
    tx, ty = train.tensors
    pick = torch.randperm(len(tx), generator=torch.Generator().manual_seed(seed))[:max_train]
    prior = class_prior(ty, info.num_classes).numpy()
    return RealReference(features(judge, x).numpy(), y.numpy(), info.num_classes,
                         features(judge, tx[pick]).numpy(), ty[pick].numpy(), prior)


# ---------------------------------------------------------------- one set, one file

def target_histogram(labels: np.ndarray, removed: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """(K,) the class histogram a set asks for (see the module docstring). labels (N,), -1 for none; removed (N, J)
    the classes each unlabelled sample asked to avoid, -1 for none; prior (K,)."""
    labels = np.asarray(labels)
    removed = per_sample(removed, len(labels))
    K = len(prior)
    rows = np.tile(prior, (len(labels), 1))                                    # (N, K)
    for j in range(removed.shape[1]):
        hit = removed[:, j] >= 0
        rows[hit, removed[hit, j]] = 0
    rows = rows / np.maximum(rows.sum(1, keepdims=True), 1e-12)
    has = labels >= 0
    rows[has] = np.eye(K)[labels[has]]
    return rows.mean(0) if len(rows) else np.full(K, math.nan)


def total_variation(p, q) -> float:
    """1/2 sum_c |p_c - q_c| of two class histograms (K,)."""
    return 0.5 * float(np.abs(np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)).sum())


def fidelity(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(TV, KL(target || generated)) of the judged classes against `target` (K,); generated smoothed by 1/2 count."""
    K, n = len(target), len(pred)
    counts = np.bincount(np.asarray(pred), minlength=K)[:K]
    gen = (counts + 0.5) / (n + 0.5 * K)
    tv = total_variation(counts / max(n, 1), target)
    kl = float(np.sum(np.where(target > 0, target * np.log(np.maximum(target, 1e-300) / gen), 0.0)))
    return tv, kl


def evaluate(judge: Judge, images: torch.Tensor, labels: np.ndarray, negatives: np.ndarray | None,
             real: RealReference, *, removed: np.ndarray | None = None) -> dict:
    """All metrics of one sample set. images in [-1, 1] (N, C, H, W); labels (N,) with -1 for none;
    negatives (N, J) with -1 for none (or None): the classes the negative-class rate counts; removed (N, J): the
    classes the set asked to avoid, for its target histogram (default: `negatives`)."""
    labels = np.asarray(labels)
    negatives = -np.ones((len(labels), 1), np.int64) if negatives is None else np.asarray(negatives)
    pred = predict(judge, images).numpy()
    feats = features(judge, images).numpy()
    return evaluate_features(pred, feats, labels, negatives, real, removed=removed)


def evaluate_features(pred: np.ndarray, feats: np.ndarray, labels: np.ndarray, negatives: np.ndarray,
                      real: RealReference, *, removed: np.ndarray | None = None) -> dict:
    """`evaluate` from the judge's predictions (N,) and features (N, D) (reused by the `real` row and tests)."""
    K = real.num_classes
    target = target_histogram(labels, negatives if removed is None else removed, real.prior)
    tv, kl = fidelity(pred, target)
    classes = sorted(int(c) for c in np.unique(labels) if c >= 0)
    fid_class, div_class = {}, {}
    for c in classes:
        own = feats[labels == c]
        fid_class[c] = fid_from_features(own, real.of_class(c))
        div_class[c] = mean_pairwise_distance(own) / real.diversity(c)
    if (labels < 0).any():                       # unconditional samples: diversity against all real images
        div_class[-1] = mean_pairwise_distance(feats[labels < 0]) / real.diversity(None)
    div = [v for v in div_class.values() if not math.isnan(v)]
    return {
        "n": int(len(pred)),
        "accuracy": class_accuracy(pred, labels),
        "neg_rate": negative_rate(pred, negatives),
        "fid": fid_from_features(feats, real.feats),
        "fid_class_mean": float(np.mean(list(fid_class.values()))) if fid_class else math.nan,
        "diversity": float(np.mean(div)) if div else math.nan,
        "frequencies": class_frequencies(pred, K).round(4).tolist(),
        "target": target.round(4).tolist(),
        "tv": tv,
        "kl": kl,
        "fid_class": {str(c): v for c, v in fid_class.items()},
        "diversity_class": {str(c): v for c, v in div_class.items()},
    }


def real_row(real: RealReference, *, labels: np.ndarray) -> dict:
    """The floor: real TRAINING images with the class counts of `labels` (-1: any class), scored like a sample
    set against the real test split. Accuracy is left out (the judge's own test accuracy stands for it)."""
    idx, lab = [], []
    for c in np.unique(labels):
        pool = np.flatnonzero(real.train_labels == c) if c >= 0 else np.arange(len(real.train_labels))
        take = pool[: int((labels == c).sum())]
        idx += take.tolist()
        lab += [int(c)] * len(take)
    idx, lab = np.array(idx, dtype=np.int64), np.array(lab, dtype=np.int64)
    row = evaluate_features(real.train_labels[idx], real.train_feats[idx], lab,
                            -np.ones((len(idx), 1), np.int64), real)
    row["accuracy"] = math.nan
    return row


def evaluate_samples(samples: Samples, judge: Judge, real: RealReference) -> dict:
    """Metrics per set of a samples.npz, plus the `real` reference row on the first set's labels. A set's
    negative-class rate is measured against the negatives of `samples.neg_rate_from(set)` (same labels, same
    seeds: for an unguided set, the rate without the push)."""
    result = {"judge_test_accuracy": judge.test_accuracy, "sets": {}}
    for name in samples.names:
        baseline = samples.neg_rate_from(name)
        row = evaluate(judge, samples.images(name), samples.of(name, "labels"), samples.of(baseline, "negatives"),
                       real, removed=samples.of(name, "negatives"))
        row["negatives_from"] = baseline
        result["sets"][name] = row
    unguided = samples.unconditional()
    if unguided is not None:                   # the model's own p(x | not k): its unguided classes, k dropped
        model_freqs = np.asarray(result["sets"][unguided]["frequencies"])
        for name, row in result["sets"].items():
            removed = samples.of(name, "negatives")
            if (removed >= 0).any():
                target = target_histogram(-np.ones(len(removed), np.int64), removed, model_freqs)
                row["tv_model"], row["model_reference"] = total_variation(row["frequencies"], target), unguided
    if samples.names:
        result["real"] = real_row(real, labels=samples.of(samples.names[0], "labels"))
    return result


# ---------------------------------------------------------------- a confusable pair (lessons 05 and 08)

def confusion_matrix(asked: np.ndarray, judged: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts: row = the class asked for, column = the class the judge sees."""
    m = np.zeros((num_classes, num_classes), int)
    np.add.at(m, (np.asarray(asked), np.asarray(judged)), 1)
    return m


def most_confused(confusion: np.ndarray) -> tuple[int, int]:
    """(pos, neg), pos != neg: the off-diagonal cell with the most counts (the first in row order on a tie)."""
    off = np.where(np.eye(len(confusion), dtype=bool), -1, confusion)
    return tuple(map(int, np.unravel_index(off.argmax(), off.shape)))


def pair_row(judge: Judge, images: torch.Tensor, *, pos: int, neg: int, real: RealReference) -> dict:
    """How samples asked to be `pos` fare against `neg`: the share judged neg (`rate`), the mean judge probability
    of neg (`p_neg`, its standard error `p_neg_se`, and per image `p_each`), the share judged pos (`acc`),
    classifier-FID against real pos test images (`fid`) and diversity relative to them (`div`)."""
    p = probabilities(judge, images).numpy()
    f = features(judge, images).numpy()
    return dict(rate=float((p.argmax(1) == neg).mean()), p_neg=float(p[:, neg].mean()),
                p_neg_se=float(p[:, neg].std() / np.sqrt(len(p))), acc=float((p.argmax(1) == pos).mean()),
                fid=fid_from_features(f, real.of_class(pos)), div=mean_pairwise_distance(f) / real.diversity(pos),
                p_each=p[:, neg])
