"""Class measures of vectors (the attention), independent of the loss; eval vectors query, train vectors refer:
:func:`precision_at_1_and_map_at_r` (Musgrave et al., "A Metric Learning Reality Check", 2020, via PML: MAP@R =
mean over queries of (1/R) sum_{i<=R} P(i) rel(i), R the query's class's references), :func:`knn_accuracy`,
:func:`probe_accuracy`, :func:`unseparated_pairs` (per class pair a shrinkage LDA, balanced accuracy < 95 %), and
:func:`pair_geometry`, not a separability measure: s_ab = D_ab / ((D_aa + D_bb) / 2), the class-pair form's own
term inverted (two Gaussians 12 sigma apart in d = 128 have s = 1 + 12^2 / (2d) < 2 yet separate perfectly)."""

import math
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from sklearn.covariance import ledoit_wolf
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["KNN_K", "SEPARATED_ABOVE", "GEOMETRY_THRESHOLD", "MAX_STORED_CLASSES", "PairMeasure", "knn_accuracy"]
__all__ += ["precision_at_1_and_map_at_r", "probe_accuracy", "unseparated_pairs", "class_distance_matrix"]
__all__ += ["geometry_from_distances", "pair_geometry", "pair_separation", "class_structure"]

KNN_K = 10  #: neighbours of the k-NN vote
SEPARATED_ABOVE = 95.0  #: a class pair whose held-out balanced accuracy (%) is below this is unseparated
GEOMETRY_THRESHOLD = 2.0  #: s_ab below this: the class means are closer than the pooled spread
MAX_STORED_CLASSES = 32  #: metrics.json keeps the K x K distance matrix up to this many classes


def _as_numpy(vectors, labels) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(vectors.detach().cpu().double() if torch.is_tensor(vectors) else vectors, dtype=np.float64)
    y = np.asarray(labels.detach().cpu() if torch.is_tensor(labels) else labels)
    if x.ndim != 2:
        raise ValueError(f"vectors must be a 2-D N x C array, got shape {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be 1-D with one label per vector ({x.shape[0]}), got shape {y.shape}")
    if x.shape[0] == 0:
        raise ValueError("no vectors: the class measures need at least one sample")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(f"labels must be non-negative integer class indices, got dtype {y.dtype}, min {y.min()}")
    if not np.isfinite(x).all():
        raise ValueError("vectors hold NaN or Inf: the class measures need finite vectors")
    return x, y.astype(np.int64)


def _splits(train_vectors, train_labels, eval_vectors, eval_labels):
    train, eval_ = _as_numpy(train_vectors, train_labels), _as_numpy(eval_vectors, eval_labels)
    if (dims := train[0].shape[1]) != eval_[0].shape[1]:
        raise ValueError(f"train vectors have {dims} dimensions, eval vectors {eval_[0].shape[1]}: they must match")
    return train, eval_


def precision_at_1_and_map_at_r(train_vectors, train_labels, eval_vectors, eval_labels) -> dict[str, float]:
    """``precision_at_1``, ``map_at_r`` in % (PML, Euclidean; queries without a reference class left out)."""
    (xt, yt), (xe, ye) = _splits(train_vectors, train_labels, eval_vectors, eval_labels)
    if not np.isin(ye, yt).any():
        raise ValueError("no evaluation class occurs in the training split: nothing to retrieve")
    centre = xt.mean(axis=0)  # PML computes in float32: centring keeps narrow-band vectors' distances exact
    knn = CustomKNN(LpDistance(normalize_embeddings=False), batch_size=1024)
    include = ("precision_at_1", "mean_average_precision_at_r")
    calculator = AccuracyCalculator(include=include, k="max_bin_count", knn_func=knn)
    got = calculator.get_accuracy(*(torch.from_numpy(v) for v in (xe - centre, ye, xt - centre, yt)))
    return {"precision_at_1": 100.0 * got["precision_at_1"], "map_at_r": 100.0 * got["mean_average_precision_at_r"]}


def knn_accuracy(train_vectors, train_labels, eval_vectors, eval_labels, k: int = KNN_K) -> float:
    """Accuracy (%) of a k-NN vote (Euclidean; ties to the smallest label; k at most the training vectors)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    train, eval_ = _splits(train_vectors, train_labels, eval_vectors, eval_labels)
    knn = KNeighborsClassifier(n_neighbors=min(k, train[0].shape[0]), algorithm="brute").fit(*train)
    return 100.0 * float((knn.predict(eval_[0]) == eval_[1]).mean())


def probe_accuracy(train_vectors, train_labels, eval_vectors, eval_labels, *, C=1.0, max_iter=2000) -> float:
    """Accuracy (%) of a linear probe: standardised, L2 multinomial logistic regression (inverse strength ``C``)."""
    train, eval_ = _splits(train_vectors, train_labels, eval_vectors, eval_labels)
    if not (isinstance(C, (int, float)) and math.isfinite(C) and C > 0):
        raise ValueError(f"C must be a finite number > 0, got {C!r}")
    classes = np.unique(train[1])
    if len(classes) == 1:
        return 100.0 * float((eval_[1] == classes[0]).mean())
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter)).fit(*train)
    return 100.0 * float((probe.predict(eval_[0]) == eval_[1]).mean())


@dataclass
class PairMeasure:
    """A symmetric class-pair matrix and what the records keep of it."""

    matrix: np.ndarray  #: K x K (rows ``classes``), NaN on the diagonal and where a pair is not measured
    classes: np.ndarray  #: the class label of each row
    minimum: float  #: the smallest value over measured pairs (NaN with none)
    below: int  #: measured pairs below the threshold
    pairs: int  #: measured pairs
    below_list: list  #: [[a, b], ...] with a < b, the pairs below the threshold, smallest first

    merged = property(lambda self: self.below)  # the names of ccloss 0.4's PairSeparation
    merged_pairs = property(lambda self: self.below_list)


def _summarise(matrix: np.ndarray, classes: np.ndarray, threshold: float) -> PairMeasure:
    np.fill_diagonal(matrix, np.nan)
    upper = np.triu_indices(len(matrix), k=1)
    values = matrix[upper]
    measured = ~np.isnan(values)
    below = np.flatnonzero(measured & (values < threshold))
    below = below[np.argsort(values[below], kind="stable")]
    pairs = [[int(classes[upper[0][i]]), int(classes[upper[1][i]])] for i in below]
    minimum = float(values[measured].min()) if measured.any() else float("nan")
    return PairMeasure(matrix, np.asarray(classes), minimum, len(below), int(measured.sum()), pairs)


def unseparated_pairs(train_vectors, train_labels, eval_vectors, eval_labels, threshold=SEPARATED_ABOVE):
    """Per class pair: sklearn's shrinkage LDA (lsqr, auto) on the pair's train vectors, balanced accuracy (%) on its
    eval vectors (NaN if a class is absent); its covariance p_a S_a + p_b S_b is computed per class."""
    (xt, yt), (xe, ye) = _splits(train_vectors, train_labels, eval_vectors, eval_labels)
    classes = np.unique(yt)
    if len(classes) < 2:
        raise ValueError(f"the training split holds {len(classes)} class(es): a class pair needs two")
    means, covs, counts = [xt[yt == c].mean(axis=0) for c in classes], [], np.array([(yt == c).sum() for c in classes])
    for c in classes:  # sklearn's LDA _cov(shrinkage="auto"): Ledoit-Wolf on standardised vectors, scaled back
        scaler = StandardScaler().fit(xt[yt == c])
        covs.append(scaler.scale_[:, None] * ledoit_wolf(scaler.transform(xt[yt == c]))[0] * scaler.scale_[None, :])
    accuracy = np.full((len(classes), len(classes)), np.nan)
    for i, j in zip(*np.triu_indices(len(classes), k=1)):
        if (ye == classes[i]).any() and (ye == classes[j]).any():
            prior = counts[[i, j]] / counts[[i, j]].sum()
            cov, centres = prior[0] * covs[i] + prior[1] * covs[j], np.stack([means[i], means[j]]).T
            try:
                coef = np.linalg.solve(cov, centres).T
            except np.linalg.LinAlgError:  # a collapsed pair: the minimum-norm least squares, as sklearn's LDA
                coef = np.linalg.lstsq(cov, centres, rcond=None)[0].T
            bias = -0.5 * (coef * np.stack([means[i], means[j]])).sum(axis=1) + np.log(prior)
            says_j = {c: xe[ye == c] @ (coef[1] - coef[0]) + bias[1] - bias[0] > 0 for c in classes[[i, j]]}
            recall = (~says_j[classes[i]]).mean() + says_j[classes[j]].mean()
            accuracy[i, j] = accuracy[j, i] = 50.0 * float(recall)
    return _summarise(accuracy, classes, threshold)


def class_distance_matrix(vectors, labels, num_classes: int | None = None) -> np.ndarray:
    """K x K, D[a, b] = mean of ||x_i - x_j||^2 over i in a, j in b (i != j; NaN under two samples), in O(N C):
    D_ab = m_a + m_b - 2 mu_a . mu_b (m mean squared norm, mu mean), D_aa = 2 (n S_a - ||sum_a||^2) / (n (n - 1))."""
    x, y = _as_numpy(vectors, labels)
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1
    if y.max() >= k:
        raise ValueError(f"a label is {y.max()}, but num_classes is {k}: labels must be below num_classes")
    x = x - x.mean(axis=0, keepdims=True)  # distances are shift-invariant; centring reduces cancellation
    onehot = np.eye(k)[y]
    counts, sums, sq = onehot.sum(axis=0), onehot.T @ x, onehot.T @ (x * x).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
        dist = (sq / counts)[:, None] + (sq / counts)[None, :] - 2.0 * means @ means.T
        within = (2 * counts * sq - 2 * (sums * sums).sum(axis=1)) / (counts * (counts - 1))
    within[counts < 2] = np.nan
    np.fill_diagonal(dist, within)
    return np.maximum(dist, 0.0, where=~np.isnan(dist), out=dist)


def geometry_from_distances(dist, classes=None, threshold: float = GEOMETRY_THRESHOLD) -> PairMeasure:
    """s_ab = D_ab / ((D_aa + D_bb) / 2) of a class distance matrix (two single points: +inf, or 1 if equal)."""
    dist = np.asarray(dist, dtype=np.float64)
    spread = (np.diag(dist)[:, None] + np.diag(dist)[None, :]) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        sep = dist / spread
    sep = np.where((spread == 0) & (dist == 0), 1.0, np.where((spread == 0) & (dist > 0), np.inf, sep))
    return _summarise(sep, np.arange(len(dist)) if classes is None else np.asarray(classes), threshold)


def pair_geometry(vectors, labels, threshold: float = GEOMETRY_THRESHOLD) -> PairMeasure:
    """The class-pair geometry s_ab of a set (module docstring); ``below`` counts the pairs with s < 2."""
    return geometry_from_distances(class_distance_matrix(vectors, labels), threshold=threshold)


pair_separation = pair_geometry  # ccloss 0.4's name


def class_structure(train_vectors, train_labels, eval_vectors, eval_labels, split: str = "test", k: int = KNN_K):
    """The flat record of a run, keys ``<split>_`` + :data:`ccloss.metrics.STRUCTURE_KEYS`."""
    train, eval_ = _splits(train_vectors, train_labels, eval_vectors, eval_labels)
    dist = class_distance_matrix(*eval_)
    geometry, pairs = geometry_from_distances(dist), unseparated_pairs(*train, *eval_)
    record = {"knn_acc": knn_accuracy(*train, *eval_, k=k), "probe_acc": probe_accuracy(*train, *eval_)}
    record.update(precision_at_1_and_map_at_r(*train, *eval_), unseparated_pairs=pairs.below)
    record.update(unseparated_pair_list=pairs.below_list, pair_accuracy_min=pairs.minimum, class_pairs=pairs.pairs)
    below = {"pair_geometry_below_2": geometry.below, "pair_geometry_below_2_list": geometry.below_list}
    record.update(pair_geometry_min=geometry.minimum, **below)
    if len(dist) <= MAX_STORED_CLASSES:
        record["classes"] = list(range(len(dist)))
        record["class_distances"] = [[None if math.isnan(v) else float(v) for v in row] for row in dist]
    return {f"{split}_{key}": value for key, value in record.items()}
