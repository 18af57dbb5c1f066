"""Figures of the notebooks: one function per kind, taking data (:mod:`ccloss.analysis`), returning a Figure."""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .analysis import class_sorted, history_summary

__all__ = ["save_figure", "plot_attention_batch", "plot_distance_matrix", "plot_distance_matrices", "plot_descent"]
__all__ += ["animate_descent", "plot_timing", "plot_training_curves", "plot_embedding_grid", "plot_pair_separation"]
__all__ += ["plot_distance_comparison", "plot_class_channel_heatmaps"]

#: metrics.json keys and their panel titles, in the order of the training-curve panels.
CURVE_PANELS = (("ce", "cross-entropy (train)"), ("cc", "CC term (train, unweighted)"), ("train_acc", "train acc (%)"))
_SPLIT_PANELS = (("acc", "accuracy (%)"), ("intra_inter", "intra/inter (attention)"))
CURVE_PANELS += tuple((f"{s}_{key}", f"{s} {title}") for s in ("test", "val") for key, title in _SPLIT_PANELS)
LOSS_LABELS = {"ce": "CE+CAM", "cc": "CC-Loss, class-pair", "cc_ratio": "CC-Loss, ratio (paper)"}
LOSS_COLOURS = {"ce": "tab:blue", "cc": "tab:orange", "cc_ratio": "tab:green"}
DISTANCE = "squared distance"


def save_figure(fig: Figure, name: str, figures_dir="../figures", formats: Sequence[str] = ("png",), dpi=110):
    """``fig`` as ``<figures_dir>/<name>.<fmt>``, renamed into place; no date or tag: same figure, same bytes."""
    folder, paths = Path(figures_dir), []
    folder.mkdir(parents=True, exist_ok=True)
    for fmt in (f.lstrip(".").lower() for f in formats):
        path, tmp = folder / f"{name}.{fmt}", folder / f".{name}.{fmt}.{os.getpid()}.tmp"
        with matplotlib.rc_context({"svg.hashsalt": "ccloss"}):
            metadata = {"svg": {"Date": None}, "png": {"Software": None}}.get(fmt)
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)
        paths.append(Path(os.replace(tmp, path) or path))
    return paths


def _heat(ax, matrix, title: str, bar: str | None, axes=("class", "class"), **options):
    """``imshow`` with a title, axis labels ``axes`` (x, y) and a colour bar labelled ``bar`` (unless None)."""
    image = ax.imshow(matrix, interpolation="nearest", **options)
    ax.set(title=title, xlabel=axes[0], ylabel=axes[1])
    if bar is not None:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=bar)
    return image


def _class_ticks(ax, sorted_labels: np.ndarray, lines: bool = True) -> None:
    """Lines between the class blocks of a class-sorted matrix, class ticks at the block centres."""
    change = np.flatnonzero(np.diff(sorted_labels)) + 1
    for edge in change if lines else ():
        ax.axhline(edge - 0.5, color="white", lw=0.6)
        ax.axvline(edge - 0.5, color="white", lw=0.6)
    starts, ends = np.r_[0, change], np.r_[change, len(sorted_labels)]
    if len(starts) > 20:  # too many classes to label
        return
    ax.set_xticks((starts + ends - 1) / 2, [str(sorted_labels[s]) for s in starts], fontsize=7)
    ax.set_yticks((starts + ends - 1) / 2, [str(sorted_labels[s]) for s in starts], fontsize=7)


def plot_attention_batch(attention: np.ndarray, labels: np.ndarray, title: str = "") -> Figure:
    """Left: a batch's B x C attention vectors (rows sorted by class); right: the histogram of values."""
    sorted_a, sorted_y, _ = class_sorted(attention, labels)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [2.2, 1]})
    title = title or "channel attention a = sigmoid(W2 relu(W1 GAP(F)))"
    _heat(ax1, sorted_a, title, "attention value", ("channel", "sample (sorted by class)"), aspect="auto")
    for edge in np.flatnonzero(np.diff(sorted_y)) + 1:
        ax1.axhline(edge - 0.5, color="white", lw=0.6)
    ax2.hist(np.ravel(attention), bins=40, color="tab:green")
    ax2.set(xlabel="attention value", ylabel="count", title="all values lie in [0, 1]")
    fig.tight_layout()
    return fig


def plot_distance_matrix(distances, labels, title="", ax=None, vmin=None, vmax=None, cmap="magma", colorbar=True):
    """A B x B distance matrix sorted by class: CC-Loss's goal is dark diagonal blocks on a bright background."""
    order = np.argsort(np.asarray(labels), kind="stable")
    fig, ax = plt.subplots(figsize=(4.6, 4)) if ax is None else (ax.figure, ax)
    d, title = np.asarray(distances)[np.ix_(order, order)], title or "distances, sorted by class"
    _heat(ax, d, title, DISTANCE if colorbar else None, ("sample's class",) * 2, cmap=cmap, vmin=vmin, vmax=vmax)
    _class_ticks(ax, np.asarray(labels)[order])
    return fig


def plot_distance_matrices(matrices: Mapping[str, tuple], vmax: float | None = None, panel_size=4.3) -> Figure:
    """``matrices[title] = (distances, labels)`` side by side on one scale, 0 to ``vmax`` (default: the largest)."""
    vmax = vmax if vmax is not None else max(float(np.nanmax(d)) for d, _ in matrices.values())
    fig, axes = plt.subplots(1, len(matrices), figsize=(panel_size * len(matrices), panel_size * 0.9), squeeze=False)
    for c, (title, (d, labels)) in enumerate(matrices.items()):
        plot_distance_matrix(d, labels, title, axes[0][c], 0.0, vmax, colorbar=c == len(matrices) - 1)
    fig.tight_layout()
    return fig


def _descent_panel(ax, traj, labels, step: int, loss: float, dims, paths: bool = True):
    """Two attention channels of the descent's vectors at ``step``, one colour per class."""
    (i, j), cmap = dims, plt.get_cmap("tab10")
    for cls in np.unique(labels):
        members = labels == cls
        if paths:
            ax.plot(traj[: step + 1, members, i], traj[: step + 1, members, j], color=cmap(cls), lw=0.5, alpha=0.4)
        xy = traj[step][members][:, [i, j]]
        ax.scatter(*xy.T, color=cmap(cls), s=18, edgecolor="black", lw=0.3, label=f"class {cls}", zorder=3)
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xlabel=f"a[{i}]", ylabel=f"a[{j}]")
    return ax.set_title(f"step {step}: CC = {loss:.3g}")


def plot_descent(result: Mapping[str, np.ndarray], labels, steps: Sequence[int] | None = None, dims=(0, 1)) -> Figure:
    """Snapshots of :func:`ccloss.analysis.descend_cc` (two channels, paths traced) and the loss and its parts."""
    traj, labels = np.asarray(result["trajectory"]), np.asarray(labels)
    steps = list(steps) if steps is not None else [0, (len(traj) - 1) // 10, len(traj) - 1]
    fig, axes = plt.subplots(1, len(steps) + 1, figsize=(3.3 * (len(steps) + 1), 3.3))
    for ax, step in zip(axes, steps):
        _descent_panel(ax, traj, labels, step, result["loss"][step], dims)
    axes[0].legend(fontsize=7)
    for key, colour in (("loss", "black"), ("d_intra", "tab:green"), ("d_inter", "tab:red")):
        axes[-1].plot(result[key], color=colour, label="CC = d_intra / d_inter" if key == "loss" else key)
    axes[-1].set(yscale="log", xlabel="gradient step", ylabel="value (log scale)", title="loss and its parts")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def animate_descent(result, labels, path: str | os.PathLike, frames: int = 30, fps: int = 8, dims=(0, 1)) -> Path:
    """A small GIF of the descent: ``frames`` snapshots (Pillow writer), written to ``path``."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    traj, labels = np.asarray(result["trajectory"]), np.asarray(labels)
    chosen = np.unique(np.linspace(0, len(traj) - 1, frames).round().astype(int))
    fig, ax = plt.subplots(figsize=(3.2, 3.2), dpi=80)

    def draw(k: int) -> None:
        ax.clear()
        _descent_panel(ax, traj, labels, chosen[k], result["loss"][chosen[k]], dims, paths=False)

    try:
        FuncAnimation(fig, draw, frames=len(chosen)).save(path, writer=PillowWriter(fps=fps))
    finally:
        plt.close(fig)
    return Path(path)


def plot_timing(timings: pd.DataFrame) -> Figure:
    """Forward + backward time of the Gram-form and the naive distances against the batch size."""
    fig, ax = plt.subplots(figsize=(4.6, 3.3))
    ax.plot(timings["B"], timings["gram (ms)"], "o-", label="Gram form (one matmul)")
    ax.plot(timings["B"], timings["naive (ms)"], "s-", label="naive (B, B, C) broadcast")
    title = f"pairwise distances, C = {int(timings['C'].iloc[0])}"
    ax.set(yscale="log", xlabel="batch size B", ylabel="forward + backward (ms)", title=title)
    ax.set_xscale("log", base=2)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_training_curves(histories: pd.DataFrame, panels: Sequence[tuple[str, str]] = CURVE_PANELS) -> Figure:
    """Per-epoch mean over seeds of each loss, banded lowest to highest seed (``load_histories``)."""
    summary = history_summary(histories)
    present = [(m, t) for m, t in panels if (summary["metric"] == m).any()] or [("", "no metric logged")]
    fig, axes = plt.subplots(1, len(present), figsize=(3.3 * len(present), 3.1), squeeze=False)
    cams = histories.groupby("loss")["cam"].first().to_dict() if not histories.empty else {}
    for ax, (metric, title) in zip(axes[0], present):
        for loss, frame in summary[summary["metric"] == metric].groupby("loss", sort=False):
            frame, n, colour = frame.sort_values("epoch"), int(frame["n"].max()), LOSS_COLOURS.get(loss)
            name = "CE" if loss == "ce" and not cams.get(loss, True) else LOSS_LABELS.get(loss, loss)
            ax.plot(frame["epoch"], frame["mean"], "o-", ms=3, color=colour, label=f"{name} (n={n})")
            if n > 1:
                ax.fill_between(frame["epoch"], frame["min"], frame["max"], color=colour, alpha=0.2, lw=0)
        ax.set(xlabel="epoch", ylabel=title.split(" (")[0])
        ax.set_title(title, fontsize=9)
        if metric in ("ce", "cc", "test_intra_inter", "val_intra_inter"):
            ax.set_yscale("log")
        ax.xaxis.get_major_locator().set_params(integer=True)
    if axes[0][0].lines:
        axes[0][0].legend(fontsize=7)
    fig.suptitle("training curves (mean over seeds; band: lowest to highest seed)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_embedding_grid(maps: Mapping[tuple[str, str], np.ndarray], labels, scores=None) -> Figure:
    """``maps[(model, kind)]``, N x 2 embeddings of the same samples, in a grid (rows: kinds; columns: models)."""
    models, kinds = list(dict.fromkeys(m for m, _ in maps)), list(dict.fromkeys(k for _, k in maps))
    labels, cmap = np.asarray(labels), plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(kinds), len(models), figsize=(4 * len(models), 3.8 * len(kinds)), squeeze=False)
    for (r, kind), (c, model) in ((rk, cm) for rk in enumerate(kinds) for cm in enumerate(models)):
        ax, xy = axes[r][c], maps.get((model, kind))
        if xy is None:
            ax.set_axis_off()
            continue
        for cls in np.unique(labels):
            ax.scatter(*xy[labels == cls].T, s=7, color=cmap(cls % 10), label=str(cls), alpha=0.85)
        score = f"  (silhouette {scores[(model, kind)]:.2f})" if scores and (model, kind) in scores else ""
        ax.set(xticks=[], yticks=[], xlabel="t-SNE 1", ylabel="t-SNE 2", title=f"{model}: {kind}{score}")
    if len(np.unique(labels)) <= 20:
        axes[0][-1].legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), title="class")
    fig.tight_layout()
    return fig


def plot_distance_comparison(samples: Mapping[str, tuple], classes: Mapping[str, np.ndarray], shared=False) -> Figure:
    """Per model: class-sorted sample distances above, the K x K class means below (``shared``: one scale a row)."""
    fig, axes = plt.subplots(2, len(samples), figsize=(4.6 * len(samples), 8), squeeze=False)
    top = max(float(np.nanmax(d)) for d, _ in samples.values()) if shared else None
    bottom = max(float(np.nanmax(m)) for m in classes.values()) if shared else None
    for c, model in enumerate(samples):
        bar = not shared or c == len(samples) - 1
        plot_distance_matrix(*samples[model], f"{model}: samples (class-sorted)", axes[0][c], 0.0, top, colorbar=bar)
        title, label = f"{model}: class x class mean", DISTANCE if bar else None
        _heat(axes[1][c], classes[model], title, label, cmap="magma", vmin=0.0, vmax=bottom)
        _class_ticks(axes[1][c], np.arange(len(classes[model])), lines=False)
    fig.tight_layout()
    return fig


def plot_pair_separation(geometries: Mapping[str, object], threshold: float = 2.0) -> Figure:
    """s_ab = D_ab / ((D_aa + D_bb) / 2) per model (:func:`~ccloss.measures.pair_geometry`), pairs < 2 crossed."""
    from matplotlib.colors import LogNorm

    shown = {m: np.clip(np.where(np.isinf(g.matrix), np.nan, g.matrix), 1e-3, None) for m, g in geometries.items()}
    logs = np.abs(np.log(np.concatenate([v[np.isfinite(v)] for v in shown.values()] + [[threshold]]) / threshold))
    norm = LogNorm(threshold / np.exp(max(logs.max(), 0.1)), threshold * np.exp(max(logs.max(), 0.1)))
    fig, axes = plt.subplots(1, len(geometries), figsize=(4.8 * len(geometries), 4.2), squeeze=False)
    for ax, (model, g) in zip(axes[0], geometries.items()):
        title = f"{model}: {g.below} of {g.pairs} pairs with s < {threshold:g}\n(min s {g.minimum:.2f})"
        image = _heat(ax, shown[model], title, None, cmap="RdBu", norm=norm)
        ax.scatter(*np.argwhere(g.matrix < threshold)[:, ::-1].T, marker="x", color="black", s=18, lw=1)
        _class_ticks(ax, np.asarray(g.classes), lines=False)
    label = f"class-pair geometry s (log scale; < {threshold:g}: means closer than the spread)"
    fig.colorbar(image, ax=list(axes[0]), fraction=0.03, pad=0.03, label=label)
    return fig


def plot_class_channel_heatmaps(matrices: Mapping[str, np.ndarray], orders=None, class_names=None) -> Figure:
    """Class x channel mean attention per model (columns in ``orders[model]`` when given), on [0, 1]."""
    rows = next(iter(matrices.values())).shape[0]
    fig, axes = plt.subplots(len(matrices), 1, figsize=(10, 2.2 + 0.25 * rows * len(matrices)), squeeze=False)
    xlabel = "channel" + (" (grouped by the class that uses it most)" if orders is not None else "")
    for ax, (model, m) in zip(axes[:, 0], matrices.items()):
        m = np.asarray(m)[:, orders[model]] if orders is not None and model in orders else np.asarray(m)
        title = f"{model}: mean attention per class and channel"
        _heat(ax, m, title, "mean attention", (xlabel, "class"), aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
        if m.shape[0] <= 20:
            ax.set_yticks(np.arange(m.shape[0]), class_names)
    fig.tight_layout()
    return fig
