"""Class structure of a set of vectors, measured independently of CC-Loss.

CC-Loss lowers its own statistic, d_intra / d_inter over all pairs, and that statistic can be
lowered without separating every class: a mean of inter-class distances is dominated by the
farthest class pairs, so pushing a few classes far away while the others stay merged lowers it
(notebook 06, "the second cheat"). These measures do not share that weakness:

- :func:`knn_accuracy`: k-nearest-neighbour accuracy (Euclidean, k = 10): fit on the training
  split's vectors, scored on the evaluation split's. Merged classes are confused by it.
- :func:`probe_accuracy`: a linear probe, multinomial logistic regression on standardised vectors
  (scikit-learn), fit on the training split, scored on the evaluation split.
- :func:`pair_separation`: per class pair s_ab = D_ab / ((D_aa + D_bb) / 2), with D the class x
  class mean squared distance (D_aa over pairs i != j). s_ab = 1 + ||mu_a - mu_b||^2 / (tr S_a +
  tr S_b) up to finite-sample terms, so s = 1 when the two class means coincide; a pair with
  s < 2 (:data:`MERGE_THRESHOLD`: the means are closer than the classes' pooled spread) counts
  as **merged**. It is a statement about the Euclidean geometry the loss acts on, not about linear
  separability (the probe measures that): high-dimensional noise can make a pair "merged" here
  that a hyperplane still separates.

:func:`class_structure` gathers all three into the flat record a run's metrics.json keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "KNN_K",
    "MERGE_THRESHOLD",
    "MAX_STORED_CLASSES",
    "PairSeparation",
    "knn_accuracy",
    "probe_accuracy",
    "class_distance_matrix",
    "separation_from_distances",
    "pair_separation",
    "class_structure",
]

#: Neighbours of the k-NN measure.
KNN_K = 10
#: A class pair with separation below this is merged: its means are closer than the pooled spread.
MERGE_THRESHOLD = 2.0
#: metrics.json keeps the class x class distance matrix only up to this many classes (CIFAR-100's
#: would be 10,000 numbers per run); the summary numbers are kept for any number of classes.
MAX_STORED_CLASSES = 32


def _as_numpy(vectors, labels) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().to("cpu", torch.float64).numpy()
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    x, y = np.asarray(vectors, dtype=np.float64), np.asarray(labels)
    if x.ndim != 2:
        raise ValueError(f"vectors must be a 2-D N x C array, got shape {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be 1-D with one label per vector ({x.shape[0]}), got shape {y.shape}")
    if x.shape[0] == 0:
        raise ValueError("no vectors: the class-structure measures need at least one sample")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    if not np.isfinite(x).all():
        raise ValueError("vectors hold NaN or Inf: the class-structure measures need finite vectors")
    return x, y.astype(np.int64)


def _check_pair(train, eval_) -> None:
    if train[0].shape[1] != eval_[0].shape[1]:
        raise ValueError(
            f"train vectors have {train[0].shape[1]} dimensions, eval vectors {eval_[0].shape[1]}: they must match"
        )


def knn_accuracy(train_vectors, train_labels, eval_vectors, eval_labels, k: int = KNN_K) -> float:
    """Accuracy (%) of a k-NN classifier (Euclidean, uniform vote; a tied vote goes to the smallest
    label) fit on ``train_*`` and scored on ``eval_*``. k is capped at the number of training vectors."""
    from sklearn.neighbors import KNeighborsClassifier

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    train, eval_ = _as_numpy(train_vectors, train_labels), _as_numpy(eval_vectors, eval_labels)
    _check_pair(train, eval_)
    knn = KNeighborsClassifier(n_neighbors=min(k, train[0].shape[0]), algorithm="brute")
    knn.fit(*train)
    return 100.0 * float((knn.predict(eval_[0]) == eval_[1]).mean())


def probe_accuracy(
    train_vectors, train_labels, eval_vectors, eval_labels, *, C: float = 1.0, max_iter: int = 2000
) -> float:
    """Accuracy (%) of a linear probe: standardise (train statistics), then L2-regularised
    multinomial logistic regression (scikit-learn, lbfgs, inverse strength ``C``) fit on ``train_*``,
    scored on ``eval_*``. With one class in the training set every prediction is that class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, eval_ = _as_numpy(train_vectors, train_labels), _as_numpy(eval_vectors, eval_labels)
    _check_pair(train, eval_)
    if not (isinstance(C, (int, float)) and math.isfinite(C) and C > 0):
        raise ValueError(f"C must be a finite number > 0, got {C!r}")
    classes = np.unique(train[1])
    if len(classes) == 1:
        return 100.0 * float((eval_[1] == classes[0]).mean())
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    probe.fit(*train)
    return 100.0 * float((probe.predict(eval_[0]) == eval_[1]).mean())


def class_distance_matrix(vectors, labels) -> tuple[np.ndarray, np.ndarray]:
    """(D, classes): D[a, b] = mean over i in a, j in b of ||x_i - x_j||^2 (over i != j when a = b;
    NaN for a class with one sample), in float64 and O(N C) memory:
    D_ab = m_a + m_b - 2 mu_a . mu_b with m the mean squared norm and mu the mean, and
    D_aa = (2 n S_a - 2 ||sum_a||^2) / (n (n - 1)) with S_a the sum of squared norms."""
    x, y = _as_numpy(vectors, labels)
    x = x - x.mean(axis=0, keepdims=True)  # distances are shift-invariant; centring reduces cancellation
    classes = np.unique(y)
    onehot = (y[:, None] == classes[None, :]).astype(np.float64)
    counts = onehot.sum(axis=0)
    sums = onehot.T @ x  # K x C
    sq = onehot.T @ (x * x).sum(axis=1)  # K
    means = sums / counts[:, None]
    mean_sq = sq / counts
    dist = mean_sq[:, None] + mean_sq[None, :] - 2.0 * means @ means.T
    with np.errstate(invalid="ignore", divide="ignore"):
        within = (2 * counts * sq - 2 * (sums * sums).sum(axis=1)) / (counts * (counts - 1))
    within[counts < 2] = np.nan
    np.fill_diagonal(dist, within)
    return np.maximum(dist, 0.0, where=~np.isnan(dist), out=dist), classes


@dataclass
class PairSeparation:
    """The class-pair separation of a set: the matrix and what the records keep of it."""

    matrix: np.ndarray  #: K x K, s_ab (diagonal NaN); NaN where a class has one sample
    classes: np.ndarray  #: the class labels of the rows
    minimum: float  #: the smallest s_ab over defined pairs (NaN with none)
    merged: int  #: defined pairs with s_ab < MERGE_THRESHOLD
    pairs: int  #: defined pairs
    merged_pairs: list  #: [[a, b], ...] with a < b, the merged pairs' labels, least separated first


def separation_from_distances(dist: np.ndarray, classes, threshold: float = MERGE_THRESHOLD) -> PairSeparation:
    """s_ab = D_ab / ((D_aa + D_bb) / 2) from a class distance matrix. Where both classes are single
    points (D_aa = D_bb = 0), s is +inf for distinct points and 1 for coinciding ones (merged)."""
    dist = np.asarray(dist, dtype=np.float64)
    spread = (np.diag(dist)[:, None] + np.diag(dist)[None, :]) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        sep = dist / spread
    sep = np.where((spread == 0) & (dist == 0), 1.0, sep)
    sep = np.where((spread == 0) & (dist > 0), np.inf, sep)
    np.fill_diagonal(sep, np.nan)
    upper = np.triu_indices(len(dist), k=1)
    values = sep[upper]
    defined = ~np.isnan(values)
    merged_idx = np.flatnonzero(defined & (values < threshold))
    merged_idx = merged_idx[np.argsort(values[merged_idx], kind="stable")]
    classes = np.asarray(classes)
    merged_pairs = [[int(classes[upper[0][i]]), int(classes[upper[1][i]])] for i in merged_idx]
    minimum = float(values[defined].min()) if defined.any() else float("nan")
    return PairSeparation(sep, classes, minimum, len(merged_idx), int(defined.sum()), merged_pairs)


def pair_separation(vectors, labels, threshold: float = MERGE_THRESHOLD) -> PairSeparation:
    """The class-pair separation matrix of a set and its summary (see the module docstring)."""
    return separation_from_distances(*class_distance_matrix(vectors, labels), threshold=threshold)


def class_structure(
    train_vectors, train_labels, eval_vectors, eval_labels, split: str = "test", k: int = KNN_K
) -> dict:
    """The flat record a run keeps: ``<split>_knn_acc``, ``_probe_acc``, ``_pair_sep_min``,
    ``_merged_pairs`` (count), ``_class_pairs``, ``_merged_pair_list`` and, with at most
    :data:`MAX_STORED_CLASSES` classes, ``_class_distances`` (the K x K matrix, rows ``_classes``)."""
    dist, classes = class_distance_matrix(eval_vectors, eval_labels)
    sep = separation_from_distances(dist, classes)
    record = {
        f"{split}_knn_acc": knn_accuracy(train_vectors, train_labels, eval_vectors, eval_labels, k=k),
        f"{split}_probe_acc": probe_accuracy(train_vectors, train_labels, eval_vectors, eval_labels),
        f"{split}_pair_sep_min": sep.minimum,
        f"{split}_merged_pairs": sep.merged,
        f"{split}_class_pairs": sep.pairs,
        f"{split}_merged_pair_list": sep.merged_pairs,
    }
    if len(classes) <= MAX_STORED_CLASSES:
        record[f"{split}_classes"] = [int(c) for c in classes]
        record[f"{split}_class_distances"] = [[None if math.isnan(v) else float(v) for v in row] for row in dist]
    return record
