"""Analysis helpers for the notebooks: embeddings, class-level distance matrices, t-SNE, scores.

Everything a notebook computes more than once lives here, takes data (tensors, arrays, run
directories) and returns data (NumPy arrays, pandas frames); :mod:`ccloss.plots` draws them.

Conventions: ``attention`` is an N x C array of channel-attention vectors, ``labels`` N integer
class indices; distances are squared Euclidean unless ``squared=False`` (the CC-Loss default,
:func:`ccloss.cc_loss.pairwise_distances`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

import numpy as np
import pandas as pd
import torch

from .cc_loss import cc_statistics, pairwise_distances
from .experiments.tables import iter_runs
from .metrics import dataset_intra_inter

__all__ = [
    "ArrayLike",
    "collect_embeddings",
    "test_embeddings",
    "class_sorted",
    "stratified_subset",
    "class_distance_matrix",
    "class_channel_matrix",
    "channel_order",
    "tsne_embed",
    "silhouette",
    "embedding_scores",
    "toy_attention",
    "descend_cc",
    "imbalanced_labels",
    "variant_table",
    "naive_pairwise_distances",
    "time_distances",
    "load_histories",
    "history_summary",
]

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[float]]  # noqa: UP007 (a runtime alias on Python 3.10)


def _numpy(x: ArrayLike, dtype=np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _labels(labels: ArrayLike) -> np.ndarray:
    out = _numpy(labels, dtype=np.int64)
    if out.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {out.shape}")
    return out


# --------------------------------------------------------------------------------------------
# Notebook parameters -> training configuration (shared by notebooks 02 and 04)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Embeddings of a trained model
# --------------------------------------------------------------------------------------------


def collect_embeddings(
    model: torch.nn.Module,
    loader_or_images,
    labels: torch.Tensor | None = None,
    *,
    info=None,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
) -> dict[str, np.ndarray]:
    """Features, attention vectors, logits, predictions and labels of a model over a data set.

    ``loader_or_images`` is a loader yielding ``(x, y)`` (e.g. a test :class:`ccloss.data.TensorLoader`)
    or a uint8 image tensor (then give ``labels`` and the dataset's ``info``). Uses
    :func:`ccloss.train.evaluate` (eval mode, no gradient). Returns float64 NumPy arrays
    (``attention`` is None for a model without CAM) and int64 ``labels``/``predictions``.
    """
    from .loader import TensorLoader
    from .train import evaluate

    device = torch.device(device)
    if isinstance(loader_or_images, torch.Tensor):
        if labels is None or info is None:
            raise ValueError("with an image tensor, pass labels= and info= (ccloss.data.dataset_info(name))")
        loader = TensorLoader(loader_or_images, labels, batch_size, train=False, info=info, device=device)
    else:
        loader = loader_or_images
    model = model.to(device)
    result = evaluate(model, loader, device)
    out = {key: (None if value is None else value.numpy().astype(np.float64)) for key, value in result.items()}
    out["labels"] = result["labels"].numpy().astype(np.int64)
    out["predictions"] = result["logits"].argmax(1).numpy().astype(np.int64)
    return out


def test_embeddings(run_dir: str | os.PathLike, data_dir: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """Load a finished run (:func:`ccloss.train.load_run`) and embed its dataset's test split.

    Returns :func:`collect_embeddings`'s arrays plus ``config``, ``metrics`` and ``test_acc`` (%).
    """
    from .data import dataset_info, load_tensors
    from .train import load_run

    config, metrics, model = load_run(run_dir, device=device)
    images, labels = load_tensors(config.dataset, "test", data_dir if data_dir is not None else config.data_dir)
    out: dict[str, Any] = collect_embeddings(model, images, labels, info=dataset_info(config.dataset), device=device)
    out.update(config=config, metrics=metrics, test_acc=100.0 * float(np.mean(out["predictions"] == out["labels"])))
    return out


def class_sorted(x: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x[order], labels[order], order)`` with ``order`` a stable sort by label."""
    labels = _labels(labels)
    order = np.argsort(labels, kind="stable")
    return _numpy(x)[order], labels[order], order


def stratified_subset(labels: ArrayLike, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of about ``size`` samples with the class proportions of ``labels``.

    All indices when ``size >= len(labels)``; otherwise per class round(size * n_k / N) samples
    drawn without replacement with ``numpy.random.default_rng(seed)``.
    """
    labels = _labels(labels)
    n = len(labels)
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    picked = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        take = max(1, int(round(size * len(members) / n)))
        picked.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(picked))


# --------------------------------------------------------------------------------------------
# Class-level matrices
# --------------------------------------------------------------------------------------------


def class_distance_matrix(
    attention: ArrayLike, labels: ArrayLike, num_classes: int | None = None, squared: bool = True
) -> np.ndarray:
    """K x K matrix of mean pairwise distances between the vectors of class a and class b.

    M[a, b] = mean_{i in a, j in b} D_ij for a != b, and M[a, a] the mean over pairs i != j of class
    a (NaN for a class with fewer than two samples, or absent). With squared distances this is
    computed from class sums in O(N C): for a != b, M[a, b] = mean ||x||^2 over a + mean ||x||^2 over
    b - 2 mu_a . mu_b, and sum_{i,j in a} D_ij = 2 n_a sum ||x_i||^2 - 2 ||sum x_i||^2. The mean of
    M's diagonal weighted by pair counts is the d_intra of CC-Loss on the same set.
    """
    x = _numpy(attention)
    labels = _labels(labels)
    if x.ndim != 2 or x.shape[0] != labels.shape[0]:
        raise ValueError(f"attention must be N x C with N = len(labels), got {x.shape} and {labels.shape}")
    k = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    if squared:  # from class sums in O(N C): ccloss.separation.class_distance_matrix, over the classes present
        from .separation import class_distance_matrix as present_classes

        present, classes = present_classes(x, labels)
        out = np.full((k, k), np.nan)
        out[np.ix_(classes, classes)] = present
        return out
    x = x - x.mean(axis=0, keepdims=True)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    out = np.full((k, k), np.nan)
    # plain Euclidean distances: accumulate the N x N matrix in row blocks (O(N^2 C) time, O(B N) memory)
    tensor = torch.as_tensor(x)
    totals = np.zeros((k, k))
    onehot = np.eye(k)[labels]
    for start in range(0, len(x), 1024):
        block = torch.cdist(tensor[start : start + 1024], tensor).numpy()
        totals += onehot[start : start + 1024].T @ block @ onehot
    pairs = np.outer(counts, counts) - np.diag(counts)
    np.divide(totals, pairs, out=out, where=pairs > 0)
    return out


def class_channel_matrix(attention: ArrayLike, labels: ArrayLike, num_classes: int | None = None) -> np.ndarray:
    """K x C matrix of the mean attention value of each channel over the samples of each class.

    Row a is mu_a = (1 / n_a) sum_{i in a} attention_i: the class's average channel profile (NaN
    for a class without samples). CC-Loss pulls every vector of a class towards this row.
    """
    x = _numpy(attention)
    labels = _labels(labels)
    k = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    out = np.full_like(sums, np.nan)
    np.divide(sums, counts[:, None], out=out, where=counts[:, None] > 0)
    return out


def channel_order(class_channel: ArrayLike) -> np.ndarray:
    """A column order for a K x C heatmap: channels grouped by the class where their mean
    attention is highest relative to the channel's mean over classes, strongest first."""
    m = _numpy(class_channel)
    centred = m - np.nanmean(m, axis=0, keepdims=True)
    top = np.nanargmax(centred, axis=0)
    strength = np.nanmax(centred, axis=0)
    return np.lexsort((-strength, top))


# --------------------------------------------------------------------------------------------
# t-SNE and scores
# --------------------------------------------------------------------------------------------


def tsne_embed(
    x: ArrayLike, seed: int = 0, max_iter: int = 1000, pca_dims: int = 50, perplexity: float = 30.0
) -> np.ndarray:
    """2-D t-SNE (van der Maaten and Hinton, 2008) of the rows of ``x``, after PCA to <= ``pca_dims``.

    scikit-learn's ``TSNE(init="pca", learning_rate="auto", max_iter=..., random_state=seed)`` on the
    standardised-by-PCA data; the same ``seed`` and rows give the same map for two models.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = _numpy(x)
    if len(x) > 1 and np.ptp(x, axis=0).max() <= 1e-12:  # scikit-learn crashes the process on this input
        raise ValueError(
            "t-SNE of identical rows is undefined: every row of x is the same vector "
            "(a collapsed attention? check the run's *_attention_collapsed)"
        )
    dims = min(pca_dims, x.shape[1], x.shape[0])
    if x.shape[1] > dims:
        x = PCA(n_components=dims, random_state=seed).fit_transform(x)
    perplexity = min(float(perplexity), max(1.0, (x.shape[0] - 1) / 3.0))
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        max_iter=int(max_iter),
        random_state=int(seed),
    )
    return tsne.fit_transform(x)


def silhouette(x: ArrayLike, labels: ArrayLike, metric: str = "euclidean") -> float:
    """Mean silhouette coefficient (Rousseeuw, 1987), in [-1, 1]: (b - a) / max(a, b) per sample,
    a = mean distance to its own class, b = to the nearest other class (``sklearn.metrics``)."""
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(_numpy(x), _labels(labels), metric=metric))


def embedding_scores(embeddings: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model: test accuracy, silhouette and intra/inter ratio of attention and features.

    ``embeddings`` maps a model name to :func:`collect_embeddings`-style dicts. The ratio is
    d_intra / d_inter of squared distances over the whole set
    (:func:`ccloss.metrics.dataset_intra_inter`), the statistic CC-Loss minimises per batch.
    """
    rows = []
    for name, emb in embeddings.items():
        labels = emb["labels"]
        row: dict[str, Any] = {"model": name}
        if "predictions" in emb:
            row["test_acc (%)"] = 100.0 * float(np.mean(np.asarray(emb["predictions"]) == labels))
        for kind in ("attention", "features"):
            x = emb.get(kind)
            if x is None:
                continue
            row[f"silhouette ({kind})"] = silhouette(x, labels)
            row[f"intra/inter ({kind})"] = dataset_intra_inter(torch.as_tensor(x), torch.as_tensor(labels))["ratio"]
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# The toy example of notebook 01: gradient descent on CC-Loss
# --------------------------------------------------------------------------------------------


def toy_attention(
    n_per_class: int = 8,
    num_classes: int = 3,
    dim: int = 2,
    spread: float = 1.0,
    centre_scale: float = 0.6,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A small labelled set of "attention logits": class centres N(0, centre_scale^2), samples
    centre + N(0, spread^2).

    Returns float64 ``(z, labels)`` with ``z`` of shape (n_per_class * num_classes) x dim; attention
    vectors are ``sigmoid(z)``, as in the SE block. Overlapping classes at the default spread.
    """
    g = torch.Generator().manual_seed(int(seed))
    centres = centre_scale * torch.randn(num_classes, dim, generator=g, dtype=torch.float64)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    z = centres[labels] + spread * torch.randn(len(labels), dim, generator=g, dtype=torch.float64)
    return z, labels


def descend_cc(
    vectors: torch.Tensor,
    labels: torch.Tensor,
    steps: int = 100,
    lr: float = 0.5,
    *,
    sigmoid: bool = True,
    **cc_options: Any,
) -> dict[str, np.ndarray]:
    """Plain gradient descent on CC-Loss alone, moving a leaf tensor: z <- z - lr * dCC/dz.

    With ``sigmoid=True`` the vectors are ``sigmoid(z)`` (attention values in (0, 1), the SE
    block's output); otherwise the vectors are ``z`` itself. ``cc_options`` go to
    :func:`ccloss.cc_loss.cc_statistics` (form, squared, eps, group_size). Returns NumPy arrays:
    ``trajectory`` (steps + 1) x N x C of the vectors, ``loss``, ``d_intra``, ``d_inter`` (steps + 1).
    """
    z = vectors.detach().clone().to(torch.float64).requires_grad_(True)
    labels = torch.as_tensor(labels)
    trajectory, losses, intra, inter = [], [], [], []
    for step in range(int(steps) + 1):
        a = torch.sigmoid(z) if sigmoid else z
        stats = cc_statistics(a, labels, **cc_options)
        trajectory.append(a.detach().numpy().copy())
        losses.append(float(stats.loss.detach()))
        intra.append(float(stats.d_intra.detach()))
        inter.append(float(stats.d_inter.detach()))
        if step == steps:
            break
        (grad,) = torch.autograd.grad(stats.loss, z)
        with torch.no_grad():
            z -= lr * grad
    return {
        "trajectory": np.stack(trajectory),
        "loss": np.array(losses),
        "d_intra": np.array(intra),
        "d_inter": np.array(inter),
    }


# --------------------------------------------------------------------------------------------
# Variants and cost (notebook 01)
# --------------------------------------------------------------------------------------------


def imbalanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """``n`` labels where class 0 holds every even position (half the batch) and the other
    classes take the odd positions in turn (so every group of consecutive samples is mixed)."""
    labels = torch.zeros(n, dtype=torch.int64)
    odd = torch.arange(1, n, 2)
    labels[odd] = torch.arange(len(odd)) % max(1, num_classes - 1) + 1
    return labels


def variant_table(
    attention: torch.Tensor, labels: torch.Tensor, variants: Iterable[Mapping[str, Any]] | None = None, seed: int = 0
) -> pd.DataFrame:
    """CC-Loss variants evaluated on one batch, with columns that explain the default form:

    - ``batch``: on the batch as given;
    - ``batch x10``: on 10 * attention (the ratio forms do not move: scale-invariant; the
      difference grows 100-fold: unbounded below once it is negative);
    - ``random``: on i.i.d. uniform vectors of the same shape with the batch's labels, where
      d_intra ~ d_inter, so the ratio is ~1;
    - ``random, imbalanced``: the same random vectors with half of the labels in one class
      (:func:`imbalanced_labels`): the means do not care, the ``sums`` form follows the ratio of
      pair counts instead of the distances.
    """
    if variants is None:
        variants = [{"form": f} for f in ("ratio", "sums", "difference", "log_ratio")] + [
            {"form": "ratio", "squared": False},
            {"form": "ratio", "group_size": 8},
        ]
    a = attention.detach().to(torch.float64)
    labels = torch.as_tensor(labels)
    g = torch.Generator().manual_seed(int(seed))
    random = torch.rand(a.shape, generator=g, dtype=torch.float64)
    skewed = imbalanced_labels(len(labels), int(labels.max()) + 1)
    rows = []
    for options in variants:
        options = dict(options)
        rows.append(
            {
                "form": options.get("form", "ratio"),
                "squared": options.get("squared", True),
                "group_size": str(options.get("group_size")),
                "batch": float(cc_statistics(a, labels, **options).loss),
                "batch x10": float(cc_statistics(10 * a, labels, **options).loss),
                "random": float(cc_statistics(random, labels, **options).loss),
                "random, imbalanced": float(cc_statistics(random, skewed, **options).loss),
            }
        )
    return pd.DataFrame(rows)


def naive_pairwise_distances(attention: torch.Tensor, squared: bool = True) -> torch.Tensor:
    """B x B distances through the (B, B, C) broadcast ``((a_i - a_j)^2).sum(-1)``: the slow,
    memory-hungry reference that the Gram form replaces (O(B^2 C) memory instead of O(B^2))."""
    diff = attention[:, None, :] - attention[None, :, :]
    dist = (diff * diff).sum(-1)
    return dist if squared else dist.clamp_min(0).sqrt()


def time_distances(
    batch_sizes: Sequence[int] = (32, 64, 128, 256, 512), channels: int = 128, repeats: int = 5, seed: int = 0
) -> pd.DataFrame:
    """Forward + backward time (best of ``repeats``, ms) of the Gram-form distances
    (:func:`ccloss.cc_loss.pairwise_distances`) against the naive broadcast, float32 on the CPU,
    and the largest absolute difference between the two matrices."""
    g = torch.Generator().manual_seed(int(seed))
    rows = []
    for b in batch_sizes:
        a = torch.rand(int(b), int(channels), generator=g)
        times = {}
        for name, fn in (("gram", pairwise_distances), ("naive", naive_pairwise_distances)):
            fn(a.clone().requires_grad_(True)).sum().backward()  # warm-up
            best = math.inf
            for _ in range(int(repeats)):
                leaf = a.clone().requires_grad_(True)
                started = time.perf_counter()
                fn(leaf).sum().backward()
                best = min(best, time.perf_counter() - started)
            times[name] = 1000.0 * best
        with torch.no_grad():
            err = float((pairwise_distances(a) - naive_pairwise_distances(a)).abs().max())
        rows.append(
            {
                "B": int(b),
                "C": int(channels),
                "gram (ms)": times["gram"],
                "naive (ms)": times["naive"],
                "speed-up": times["naive"] / max(times["gram"], 1e-9),
                "max |diff|": err,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Run directories (notebook 02)
# --------------------------------------------------------------------------------------------


def load_histories(run_dirs: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Tidy per-epoch metrics of run directories: one row per (run, epoch, metric).

    Columns: ``run_dir``, ``loss``, ``seed``, ``cam``, ``epoch``, ``metric``, ``value``; read from
    each run's ``config.json`` and ``metrics.json`` (``history``). Missing runs are skipped.
    """
    rows = []
    for run_dir, config, metrics in iter_runs(run_dirs):
        for record in metrics.get("history", []):
            for metric, value in record.items():
                if metric == "epoch" or not isinstance(value, (int, float)):
                    continue
                rows.append(
                    {
                        "run_dir": str(run_dir),
                        "loss": config.get("loss"),
                        "seed": config.get("seed"),
                        "cam": config.get("cam"),
                        "epoch": int(record["epoch"]),
                        "metric": metric,
                        "value": float(value),
                    }
                )
    return pd.DataFrame(rows, columns=["run_dir", "loss", "seed", "cam", "epoch", "metric", "value"])


def history_summary(histories: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof=1, 0 for one seed), min, max and n over seeds per (loss, metric, epoch)."""
    grouped = histories.groupby(["loss", "metric", "epoch"], sort=False)["value"]
    out = grouped.agg(["mean", "std", "min", "max", "count"]).rename(columns={"count": "n"}).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out
