"""Figures of the notebooks and the README: one function per kind of figure.

Every function takes data (arrays, frames; see :mod:`ccloss.analysis`), never globals, and
returns a :class:`matplotlib.figure.Figure`; :func:`save_figure` writes it under a stable name.
Nothing here calls ``plt.show()`` or needs a display (the Agg backend is fine).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .analysis import class_sorted, history_summary
from .runtime.atomic import atomic_write

__all__ = [
    "save_figure",
    "plot_attention_batch",
    "plot_distance_matrix",
    "plot_distance_matrices",
    "plot_descent",
    "animate_descent",
    "plot_timing",
    "plot_training_curves",
    "plot_embedding_grid",
    "plot_distance_comparison",
    "plot_pair_separation",
    "plot_class_channel_heatmaps",
]

#: Metric keys of metrics.json and their axis titles, in the order of the training-curve panels.
CURVE_PANELS = (
    ("ce", "cross-entropy (train)"),
    ("cc", "CC term (train, unweighted)"),
    ("train_acc", "train accuracy (%)"),
    ("test_acc", "test accuracy (%)"),
    ("test_intra_inter", "test intra/inter ratio (attention)"),
    ("val_acc", "validation accuracy (%)"),
    ("val_intra_inter", "validation intra/inter ratio (attention)"),
)
LOSS_LABELS = {"ce": "CE+CAM", "cc": "CC-Loss"}
LOSS_COLOURS = {"ce": "tab:blue", "cc": "tab:orange"}
CLASS_CMAP = "tab10"


def _label(loss: str, cam: bool = True) -> str:
    if loss == "ce":
        return "CE+CAM" if cam else "CE"
    return LOSS_LABELS.get(loss, loss)


def save_figure(
    fig: Figure,
    name: str,
    figures_dir: str | os.PathLike = "../figures",
    formats: Sequence[str] = ("png",),
    dpi: int = 110,
) -> list[Path]:
    """Write ``fig`` as ``<figures_dir>/<name>.<fmt>`` for each format, atomically; returns the paths.

    SVGs get a fixed hash salt and no date, PNGs no software tag, so a rerun that draws the same
    figure writes the same bytes.
    """
    paths = []
    for fmt in (f.lstrip(".").lower() for f in formats):
        metadata = {"Date": None} if fmt == "svg" else ({"Software": None} if fmt == "png" else None)

        def draw(handle, fmt=fmt, metadata=metadata) -> None:
            with matplotlib.rc_context({"svg.hashsalt": "ccloss"}):
                fig.savefig(handle, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)

        paths.append(atomic_write(Path(figures_dir) / f"{name}.{fmt}", draw, mode="wb"))
    return paths


def _class_boundaries(ax, sorted_labels: np.ndarray, colour: str = "white") -> None:
    """Lines between the class blocks of a class-sorted matrix, and class ticks at block centres."""
    change = np.flatnonzero(np.diff(sorted_labels)) + 1
    for edge in change:
        ax.axhline(edge - 0.5, color=colour, lw=0.6)
        ax.axvline(edge - 0.5, color=colour, lw=0.6)
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(sorted_labels)]])
    centres = (starts + ends - 1) / 2
    ax.set_xticks(centres, [str(sorted_labels[s]) for s in starts], fontsize=7)
    ax.set_yticks(centres, [str(sorted_labels[s]) for s in starts], fontsize=7)


def plot_attention_batch(attention: np.ndarray, labels: np.ndarray, title: str = "") -> Figure:
    """Left: the B x C attention vectors of a batch (class-sorted rows); right: histogram of values."""
    sorted_a, sorted_y, _ = class_sorted(attention, labels)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [2.2, 1]})
    image = ax1.imshow(sorted_a, aspect="auto", cmap="viridis", interpolation="nearest")
    change = np.flatnonzero(np.diff(sorted_y)) + 1
    for edge in change:
        ax1.axhline(edge - 0.5, color="white", lw=0.6)
    ax1.set_xlabel("channel")
    ax1.set_ylabel("sample (sorted by class)")
    ax1.set_title(title or "channel attention a = sigmoid(W2 relu(W1 GAP(F)))")
    fig.colorbar(image, ax=ax1, fraction=0.04)
    ax2.hist(np.ravel(attention), bins=40, color="tab:green")
    ax2.set_xlabel("attention value")
    ax2.set_ylabel("count")
    ax2.set_title("all values lie in (0, 1)")
    fig.tight_layout()
    return fig


def plot_distance_matrix(
    distances: np.ndarray,
    labels: np.ndarray,
    title: str = "",
    ax=None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "magma",
    colorbar: bool = True,
):
    """A B x B (or N x N) distance matrix with rows and columns sorted by class.

    Same-class blocks sit on the diagonal, so CC-Loss's goal reads as dark diagonal blocks
    (small d_intra) on a bright background (large d_inter). Returns the figure.
    """
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    d = np.asarray(distances)[np.ix_(order, order)]
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 4))
    else:
        fig = ax.figure
    image = ax.imshow(d, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    _class_boundaries(ax, labels[order])
    ax.set_title(title)
    if colorbar:
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def plot_distance_matrices(
    matrices: Mapping[str, tuple[np.ndarray, np.ndarray]], vmax: float | None = None, panel_size: float = 4.3
) -> Figure:
    """Class-sorted distance matrices side by side on one colour scale (0 to ``vmax``, default the
    largest entry of all). ``matrices[title] = (distances, labels)``."""
    titles = list(matrices)
    if vmax is None:
        vmax = max(float(np.nanmax(d)) for d, _ in matrices.values())
    fig, axes = plt.subplots(1, len(titles), figsize=(panel_size * len(titles), panel_size * 0.9), squeeze=False)
    for c, title in enumerate(titles):
        d, labels = matrices[title]
        plot_distance_matrix(d, labels, title=title, ax=axes[0][c], vmin=0.0, vmax=vmax, colorbar=c == len(titles) - 1)
    fig.tight_layout()
    return fig


def plot_descent(
    result: Mapping[str, np.ndarray],
    labels: np.ndarray,
    steps: Sequence[int] | None = None,
    dims: tuple[int, int] = (0, 1),
) -> Figure:
    """Snapshots of :func:`ccloss.analysis.descend_cc` (two attention channels per panel, one
    colour per class, each vector's path traced) and the loss, d_intra and d_inter per step."""
    traj = np.asarray(result["trajectory"])
    last = traj.shape[0] - 1
    steps = list(steps) if steps is not None else [0, last // 10, last]
    labels = np.asarray(labels)
    cmap = plt.get_cmap(CLASS_CMAP)
    fig, axes = plt.subplots(1, len(steps) + 1, figsize=(3.3 * (len(steps) + 1), 3.3))
    i, j = dims
    for ax, step in zip(axes, steps):
        for cls in np.unique(labels):
            members = labels == cls
            ax.plot(traj[: step + 1, members, i], traj[: step + 1, members, j], color=cmap(cls), lw=0.5, alpha=0.4)
            ax.scatter(
                traj[step, members, i],
                traj[step, members, j],
                color=cmap(cls),
                s=18,
                edgecolor="black",
                linewidth=0.3,
                label=f"class {cls}",
                zorder=3,
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel(f"a[{i}]")
        ax.set_ylabel(f"a[{j}]")
        ax.set_title(f"step {step}: CC = {result['loss'][step]:.3f}")
    axes[0].legend(fontsize=7, loc="best")
    ax = axes[-1]
    x = np.arange(traj.shape[0])
    ax.plot(x, result["loss"], label="CC = d_intra / d_inter", color="black")
    ax.plot(x, result["d_intra"], label="d_intra", color="tab:green")
    ax.plot(x, result["d_inter"], label="d_inter", color="tab:red")
    ax.set_yscale("log")
    ax.set_xlabel("gradient step")
    ax.set_title("loss and its parts")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def animate_descent(
    result: Mapping[str, np.ndarray],
    labels: np.ndarray,
    path: str | os.PathLike,
    frames: int = 30,
    fps: int = 8,
    dims: tuple[int, int] = (0, 1),
) -> Path:
    """A small GIF of the descent (``frames`` snapshots, Pillow writer), written atomically."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    traj = np.asarray(result["trajectory"])
    labels = np.asarray(labels)
    cmap = plt.get_cmap(CLASS_CMAP)
    chosen = np.unique(np.linspace(0, traj.shape[0] - 1, frames).round().astype(int))
    fig, ax = plt.subplots(figsize=(3.2, 3.2), dpi=80)
    i, j = dims
    scatter = ax.scatter(
        traj[0, :, i], traj[0, :, j], c=[cmap(c) for c in labels], s=18, edgecolor="black", linewidth=0.3
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel(f"a[{i}]")
    ax.set_ylabel(f"a[{j}]")
    title = ax.set_title("")
    fig.tight_layout()

    def update(k: int):
        step = chosen[k]
        scatter.set_offsets(traj[step][:, [i, j]])
        title.set_text(f"step {step}: CC = {result['loss'][step]:.3f}")
        return scatter, title

    animation = FuncAnimation(fig, update, frames=len(chosen), blit=False)
    try:
        with tempfile.TemporaryDirectory() as scratch:  # Pillow writes to a file name; then one atomic write
            frames = Path(scratch) / "descent.gif"
            animation.save(frames, writer=PillowWriter(fps=fps))
            return atomic_write(path, lambda handle: handle.write(frames.read_bytes()), mode="wb")
    finally:
        plt.close(fig)


def plot_timing(timings: pd.DataFrame) -> Figure:
    """Forward + backward time of the Gram-form and the naive distances against the batch size."""
    fig, ax = plt.subplots(figsize=(4.6, 3.3))
    ax.plot(timings["B"], timings["gram (ms)"], "o-", label="Gram form (one matmul)")
    ax.plot(timings["B"], timings["naive (ms)"], "s-", label="naive (B, B, C) broadcast")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("forward + backward (ms)")
    ax.set_title(f"pairwise distances, C = {int(timings['C'].iloc[0])}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_training_curves(histories: pd.DataFrame, panels: Sequence[tuple[str, str]] = CURVE_PANELS) -> Figure:
    """Per-epoch curves of each loss: the mean over seeds, with a band from the lowest to the
    highest seed. ``histories`` is :func:`ccloss.analysis.load_histories`'s tidy frame; panels
    whose metric no run logged are left out."""
    summary = history_summary(histories)
    present = [(m, t) for m, t in panels if (summary["metric"] == m).any()]
    fig, axes = plt.subplots(1, max(1, len(present)), figsize=(3.3 * max(1, len(present)), 3.1), squeeze=False)
    cams = histories.groupby("loss")["cam"].first().to_dict() if not histories.empty else {}
    for ax, (metric, title) in zip(axes[0], present):
        for loss, frame in summary[summary["metric"] == metric].groupby("loss", sort=False):
            frame = frame.sort_values("epoch")
            colour = LOSS_COLOURS.get(loss)
            n = int(frame["n"].max())
            ax.plot(
                frame["epoch"],
                frame["mean"],
                "o-",
                ms=3,
                color=colour,
                label=f"{_label(loss, bool(cams.get(loss, True)))} (n={n})",
            )
            if n > 1:
                ax.fill_between(frame["epoch"], frame["min"], frame["max"], color=colour, alpha=0.2, lw=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        if metric in ("ce", "cc", "test_intra_inter", "val_intra_inter"):
            ax.set_yscale("log")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_embedding_grid(
    maps: Mapping[tuple[str, str], np.ndarray],
    labels: np.ndarray,
    scores: Mapping[tuple[str, str], float] | None = None,
) -> Figure:
    """A grid of 2-D embeddings (e.g. t-SNE): rows = kinds (attention, features), columns = models.

    ``maps[(model, kind)]`` is an N x 2 array, all of the same N samples (``labels``); ``scores``
    (e.g. silhouettes) are shown in the panel titles.
    """
    models = list(dict.fromkeys(m for m, _ in maps))
    kinds = list(dict.fromkeys(k for _, k in maps))
    labels = np.asarray(labels)
    cmap = plt.get_cmap(CLASS_CMAP)
    fig, axes = plt.subplots(len(kinds), len(models), figsize=(4 * len(models), 3.8 * len(kinds)), squeeze=False)
    for r, kind in enumerate(kinds):
        for c, model in enumerate(models):
            ax = axes[r][c]
            xy = maps.get((model, kind))
            if xy is None:
                ax.set_axis_off()
                continue
            for cls in np.unique(labels):
                members = labels == cls
                ax.scatter(xy[members, 0], xy[members, 1], s=7, color=cmap(cls % 10), label=str(cls), alpha=0.85)
            score = (
                "" if scores is None or (model, kind) not in scores else f"  (silhouette {scores[(model, kind)]:.2f})"
            )
            ax.set_title(f"{model}: {kind}{score}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    if len(np.unique(labels)) <= 20:
        axes[0][-1].legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), title="class")
    fig.tight_layout()
    return fig


def plot_distance_comparison(
    samples: Mapping[str, tuple[np.ndarray, np.ndarray]], classes: Mapping[str, np.ndarray], shared: bool = False
) -> Figure:
    """Top row: class-sorted sample distance matrices per model; bottom row: class x class mean
    distance matrices. Each panel has its own colour scale (0 to its largest value) and colour bar,
    so a model whose distances are all small is still readable; ``shared=True`` gives each row one.

    ``samples[model] = (N x N distances, labels)``; ``classes[model] = K x K matrix``.
    """
    models = list(samples)
    fig, axes = plt.subplots(2, len(models), figsize=(4.6 * len(models), 8), squeeze=False)
    vmax_samples = max(float(np.nanmax(d)) for d, _ in samples.values())
    vmax_classes = max(float(np.nanmax(m)) for m in classes.values())
    for c, model in enumerate(models):
        d, labels = samples[model]
        last = c == len(models) - 1
        title = f"{model}: samples (class-sorted)"
        plot_distance_matrix(d, labels, title=title, ax=axes[0][c], vmin=0.0, vmax=vmax_samples if shared else None,
                             colorbar=not shared or last)  # fmt: skip
        ax = axes[1][c]
        m = classes[model]
        image = ax.imshow(m, cmap="magma", vmin=0.0, vmax=vmax_classes if shared else None, interpolation="nearest")
        ax.set_title(f"{model}: class x class mean", fontsize=10)
        _class_axes(ax, m.shape[0])
        if not shared or c == len(models) - 1:
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def _class_axes(ax, classes: int) -> None:
    ax.set_xlabel("class")
    ax.set_ylabel("class")
    if classes <= 20:
        ax.set_xticks(np.arange(classes))
        ax.set_yticks(np.arange(classes))


def plot_pair_separation(separations: Mapping[str, object], threshold: float = 2.0) -> Figure:
    """Class-pair separation s_ab = D_ab / ((D_aa + D_bb) / 2) per model (:func:`ccloss.separation.pair_separation`),
    on one log colour scale centred on ``threshold``: red pairs are merged (s < 2), blue ones apart;
    merged pairs are also marked with a cross, and the title counts them."""
    from matplotlib.colors import TwoSlopeNorm

    models = list(separations)
    fig, axes = plt.subplots(1, len(models), figsize=(4.8 * len(models), 4.2), squeeze=False)
    logs = {
        m: np.log(np.clip(np.where(np.isinf(s.matrix), np.nan, s.matrix), 1e-3, None)) for m, s in separations.items()
    }
    finite = np.concatenate([v[np.isfinite(v)] for v in logs.values()] or [np.zeros(1)])
    spread = max(float(np.abs(finite - np.log(threshold)).max()), 0.1)
    norm = TwoSlopeNorm(vcenter=np.log(threshold), vmin=np.log(threshold) - spread, vmax=np.log(threshold) + spread)
    for ax, model in zip(axes[0], models):
        sep = separations[model]
        image = ax.imshow(logs[model], cmap="RdBu", norm=norm, interpolation="nearest")
        merged = np.argwhere(sep.matrix < threshold)
        ax.scatter(merged[:, 1], merged[:, 0], marker="x", color="black", s=18, linewidths=1)
        ax.set_title(f"{model}: {sep.merged} of {sep.pairs} pairs merged (min s {sep.minimum:.2f})", fontsize=10)
        _class_axes(ax, len(sep.classes))
    bar = fig.colorbar(image, ax=list(axes[0]), fraction=0.03, pad=0.03)
    ticks = [t for t in (0.5, 1, 2, 4, 8, 16, 32, 64) if abs(np.log(t) - np.log(threshold)) <= spread]
    bar.set_ticks(np.log(ticks))
    bar.set_ticklabels([f"{t:g}" for t in ticks])
    bar.set_label("separation s (log scale; < 2: merged)")
    return fig


def plot_class_channel_heatmaps(
    matrices: Mapping[str, np.ndarray],
    orders: Mapping[str, np.ndarray] | None = None,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Class x channel mean attention per model (rows: classes; columns: channels, reordered by
    ``orders[model]`` when given), on one shared colour scale in [0, 1]."""
    models = list(matrices)
    fig, axes = plt.subplots(
        len(models), 1, figsize=(10, 2.2 + 0.25 * next(iter(matrices.values())).shape[0] * len(models)), squeeze=False
    )
    for r, model in enumerate(models):
        m = np.asarray(matrices[model])
        if orders is not None and model in orders:
            m = m[:, orders[model]]
        ax = axes[r][0]
        image = ax.imshow(m, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"{model}: mean attention per class and channel", fontsize=10)
        ax.set_ylabel("class")
        ax.set_xlabel("channel" + (" (grouped by the class that uses it most)" if orders is not None else ""))
        if m.shape[0] <= 20:
            ax.set_yticks(np.arange(m.shape[0]), class_names if class_names is not None else None)
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    fig.tight_layout()
    return fig
