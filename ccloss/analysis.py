"""What the notebooks compute more than once, as NumPy arrays or pandas frames; squared Euclidean distances."""

import json
import os
import timeit
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .cc_loss import cc_statistics, pairwise_distances
from .measures import class_distance_matrix
from .metrics import upgrade_keys
from .runtime.run_dir import CONFIG_FILE, METRICS_FILE

__all__ = ["collect_embeddings", "test_embeddings", "class_sorted", "stratified_subset", "class_distance_matrix"]
__all__ += ["class_channel_matrix", "channel_order", "tsne_embed", "silhouette", "toy_attention"]
__all__ += ["descend_cc", "variant_table", "time_distances", "load_histories", "history_summary"]


def _numpy(x, dtype=np.float64) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=dtype)


def _labels(labels) -> np.ndarray:
    out = _numpy(labels, dtype=np.int64)
    if out.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {out.shape}")
    return out


def collect_embeddings(model, loader_or_images, labels=None, *, info=None, device="cpu", batch_size=512) -> dict:
    """:func:`ccloss.train.evaluate` as NumPy arrays, over a loader or uint8 images with ``labels``, ``info``."""
    from .loader import TensorLoader
    from .train import evaluate

    device, loader = torch.device(device), loader_or_images
    if isinstance(loader_or_images, torch.Tensor):
        if labels is None or info is None:
            raise ValueError("with an image tensor, pass labels= and info= (ccloss.data.dataset_info(name))")
        loader = TensorLoader(loader_or_images, labels, batch_size, train=False, info=info, device=device)
    result = evaluate(model.to(device), loader, device)
    out = {k: v.numpy().astype(np.float64) if torch.is_tensor(v) else v for k, v in result.items()}
    out.update(labels=result["labels"].numpy().astype(np.int64), predictions=result["logits"].argmax(1).numpy())
    return out


def test_embeddings(run_dir: str | os.PathLike, data_dir: str | None = None, device: str = "cpu") -> dict:
    """:func:`collect_embeddings` of a finished run on its test split, with ``config``, ``metrics``, ``test_acc``."""
    from .data import dataset_info, load_tensors
    from .train import load_run

    config, metrics, model = load_run(run_dir, device=device)
    images, labels = load_tensors(config.dataset, "test", data_dir if data_dir is not None else config.data_dir)
    out = collect_embeddings(model, images, labels, info=dataset_info(config.dataset), device=device)
    out.update(config=config, metrics=metrics, test_acc=100.0 * float(np.mean(out["predictions"] == out["labels"])))
    return out


def class_sorted(x, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x[order], labels[order], order)`` with ``order`` a stable sort by label."""
    labels = _labels(labels)
    order = np.argsort(labels, kind="stable")
    return _numpy(x)[order], labels[order], order


def stratified_subset(labels, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of about ``size`` samples, per class max(1, round(size n_k / N)) (all when ``size >= N``)."""
    labels = _labels(labels)
    if size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        take = min(len(members), max(1, int(round(size * len(members) / len(labels)))))
        picked.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(picked))


def class_channel_matrix(attention, labels, num_classes: int | None = None) -> np.ndarray:
    """K x C, row a = mu_a = (1 / n_a) sum_{i in a} attention_i, the class's mean profile (NaN without samples)."""
    x, labels = _numpy(attention), _labels(labels)
    k = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    counts = np.bincount(labels, minlength=k).astype(np.float64)[:, None]
    return np.divide(sums, counts, out=np.full_like(sums, np.nan), where=counts > 0)


def channel_order(class_channel) -> np.ndarray:
    """Columns of a K x C heatmap grouped by the class where each is highest relative to its mean, strongest first."""
    centred = _numpy(class_channel) - np.nanmean(_numpy(class_channel), axis=0, keepdims=True)
    return np.lexsort((-np.nanmax(centred, axis=0), np.nanargmax(centred, axis=0)))


def tsne_embed(x, seed: int = 0, max_iter: int = 1000, pca_dims: int = 50, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE (van der Maaten and Hinton, 2008) of the rows of ``x`` after PCA to <= ``pca_dims`` (sklearn)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = _numpy(x)
    if len(x) > 1 and np.ptp(x, axis=0).max() <= 1e-12:  # scikit-learn crashes the process on this input
        raise ValueError("t-SNE of identical rows is undefined (a collapsed attention? see *_attention_collapsed)")
    dims = min(pca_dims, *x.shape)
    if x.shape[1] > dims:
        x = PCA(n_components=dims, random_state=seed).fit_transform(x)
    perplexity = min(float(perplexity), max(1.0, (x.shape[0] - 1) / 3.0))
    tsne = TSNE(2, perplexity=perplexity, init="pca", learning_rate="auto", max_iter=int(max_iter), random_state=seed)
    return tsne.fit_transform(x)


def silhouette(x, labels, metric: str = "euclidean") -> float:
    """Mean silhouette (Rousseeuw, 1987): (b - a) / max(a, b), a own-class, b nearest-class mean distance."""
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(_numpy(x), _labels(labels), metric=metric))


def toy_attention(n_per_class=8, num_classes=3, dim=2, spread=1.0, centre_scale=0.6, seed=0):
    """Float64 ``(z, labels)``: class centres N(0, centre_scale^2), samples centre + N(0, spread^2), N x dim."""
    g = torch.Generator().manual_seed(int(seed))
    centres = centre_scale * torch.randn(num_classes, dim, generator=g, dtype=torch.float64)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=g, dtype=torch.float64), labels


def descend_cc(vectors, labels, steps: int = 100, lr: float = 0.5, *, sigmoid: bool = True, **cc_options) -> dict:
    """Gradient descent on CC-Loss alone, z <- z - lr dCC/dz (vectors sigmoid(z)): trajectory, loss and parts."""
    z = vectors.detach().clone().to(torch.float64).requires_grad_(True)
    labels, out = torch.as_tensor(labels), {"trajectory": [], "loss": [], "d_intra": [], "d_inter": []}
    for step in range(int(steps) + 1):
        a = torch.sigmoid(z) if sigmoid else z
        stats = cc_statistics(a, labels, **cc_options)
        out["trajectory"].append(a.detach().numpy().copy())
        for key, value in (("loss", stats.loss), ("d_intra", stats.d_intra), ("d_inter", stats.d_inter)):
            out[key].append(float(value.detach()))
        if step < steps:
            (grad,) = torch.autograd.grad(stats.loss, z)
            with torch.no_grad():
                z -= lr * grad
    return {key: np.stack(value) if key == "trajectory" else np.array(value) for key, value in out.items()}


def variant_table(attention, labels, variants: Iterable[Mapping] | None = None, seed: int = 0):
    """CC-Loss variants on a batch, on it x10, on uniform vectors with its labels and with half of them in class 0."""
    if variants is None:
        variants = [{"form": f} for f in ("ratio", "sums", "difference", "log_ratio")]
        variants += [{"form": "ratio", "squared": False}, {"form": "ratio", "group_size": 8}]
    a, labels = attention.detach().to(torch.float64), torch.as_tensor(labels)
    random = torch.rand(a.shape, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    skewed = torch.zeros(len(labels), dtype=torch.int64)  # class 0 on even positions, the others in turn
    skewed[1::2] = torch.arange(len(skewed[1::2])) % max(1, int(labels.max())) + 1
    sets = {"batch": (a, labels), "batch x10": (10 * a, labels), "random": (random, labels)}
    sets["random, imbalanced"] = (random, skewed)
    rows = []
    for options in ({"form": "ratio", **v} for v in variants):  # without a form: the paper's ratio
        row = {"form": options["form"], "squared": options.get("squared", True)}
        row["group_size"] = str(options.get("group_size"))
        rows.append({**row, **{name: float(cc_statistics(*s, **options).loss) for name, s in sets.items()}})
    return pd.DataFrame(rows)


def _broadcast_distances(a: torch.Tensor) -> torch.Tensor:
    """((a_i - a_j)^2).sum(-1) through a (B, B, C) broadcast: the O(B^2 C)-memory reference."""
    return ((a[:, None, :] - a[None, :, :]) ** 2).sum(-1)


def time_distances(batch_sizes: Sequence[int] = (32, 64, 128, 256, 512), channels=128, repeats=5, seed=0):
    """Forward + backward ms (best of ``repeats``, CPU) of the Gram-form and the broadcast distances, max |diff|."""
    g, rows = torch.Generator().manual_seed(int(seed)), []
    for b in batch_sizes:
        a, times = torch.rand(int(b), int(channels), generator=g), {}
        for name, fn in (("gram", pairwise_distances), ("naive", _broadcast_distances)):
            run = lambda fn=fn, a=a: fn(a.clone().requires_grad_(True)).sum().backward()  # noqa: E731
            times[name] = 1000.0 * min(timeit.repeat(run, number=1, repeat=int(repeats) + 1)[1:])  # 1st: warm-up
        err = float((pairwise_distances(a) - _broadcast_distances(a)).abs().max())
        rows.append({"B": int(b), "C": int(channels), "gram (ms)": times["gram"], "naive (ms)": times["naive"]})
        rows[-1].update({"speed-up": times["naive"] / max(times["gram"], 1e-9), "max |diff|": err})
    return pd.DataFrame(rows)


def load_histories(run_dirs: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per (run, epoch, metric) of the runs' histories (old keys upgraded); runs without both files skipped."""
    columns, rows = ["run_dir", "loss", "seed", "cam", "epoch", "metric", "value"], []
    for run_dir in map(Path, run_dirs):
        try:
            config, metrics = (json.loads((run_dir / f).read_text()) for f in (CONFIG_FILE, METRICS_FILE))
        except (OSError, ValueError):
            continue
        for record in map(upgrade_keys, metrics.get("history", [])):
            for metric, value in record.items():
                if metric != "epoch" and isinstance(value, (int, float)):
                    run = [str(run_dir), config.get("loss"), config.get("seed"), config.get("cam")]
                    rows.append(dict(zip(columns, [*run, int(record["epoch"]), metric, float(value)])))
    return pd.DataFrame(rows, columns=columns)


def history_summary(histories: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof=1, 0 for one seed), min, max and n over seeds per (loss, metric, epoch)."""
    grouped = histories.groupby(["loss", "metric", "epoch"], sort=False)["value"]
    out = grouped.agg(["mean", "std", "min", "max", "count"]).rename(columns={"count": "n"}).reset_index()
    return out.assign(std=out["std"].fillna(0.0))
