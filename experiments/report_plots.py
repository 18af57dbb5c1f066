"""The figures of sweep reports and of the CC-Loss default study (notebooks 03, 04 and 06)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .files import atomic_write
from .report import baseline_text, group_label, paper_curves, value_key
from .study import summarize

__all__ = ["plot_ablation", "plot_categories", "plot_study"]


def _ours_label(table: pd.DataFrame) -> str:
    parts = []
    for column in ("dataset", "backbone"):
        if column in table and table[column].nunique() == 1:
            parts.append(str(table[column].iloc[0]))
    return "ours" + (f" ({', '.join(parts)})" if parts else "")


def _finish(fig, path: str | os.PathLike | None, title: str | None):
    """Title, tight layout, and a PNG at ``path`` when given; returns the figure."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fmt = os.path.splitext(str(path))[1].lstrip(".") or "png"
        atomic_write(path, lambda handle: fig.savefig(handle, format=fmt, dpi=110, bbox_inches="tight"), mode="wb")
    return fig


def _delta_panel(ax, xs, table: pd.DataFrame, curves: dict, spec: dict, bars: bool) -> None:
    """Accuracy change against the sweep's baseline: ours (error bars: std over seeds) and the
    paper's on each of its datasets."""
    ax.axhline(0, color="0.6", lw=0.8)
    if bars:
        ax.bar(xs, table["ours_delta"], yerr=table["test_acc_std"], capsize=4, color="tab:blue", alpha=0.8,
               label=_ours_label(table))  # fmt: skip
        offsets = np.linspace(-0.3, 0.3, max(1, len(curves)))
        for offset, (name, curve) in zip(offsets, curves.items()):
            ax.plot(xs + offset, curve["delta"], ls="none", marker="D", ms=5, label=f"paper: {name}")
    else:
        ax.errorbar(xs, table["ours_delta"], yerr=table["test_acc_std"], marker="o", capsize=4, lw=2,
                    label=_ours_label(table))  # fmt: skip
        for name, curve in curves.items():
            ax.plot(xs, curve["delta"], ls="--", marker="x", label=f"paper: {name}")
    ax.set_ylabel("Δ test accuracy (pp)")
    ax.set_title(("" if bars else "(c) ") + f"change vs {baseline_text(spec['paper']['baseline'])}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the axes: never over the data


def plot_ablation(
    table: pd.DataFrame, spec: dict, x: str, path: str | os.PathLike | None = None, title: str | None = None,
    log2: bool = False, xlabel: str | None = None,
):  # fmt: skip
    """A numeric sweep (lambda, batch size, group size) in up to three panels.

    (a) our test accuracy, mean ± std over seeds; (b) our test intra/inter ratio of the
    attention vectors; (c) accuracy change against the sweep's baseline: ours (error bars: std
    over seeds) and the paper's curves on its own datasets, on the same axes.
    """
    values = table[x].astype(float).to_numpy()
    gaps = np.diff(np.sort(values))
    even = not log2 and len(values) > 2 and gaps.min() < 0.05 * (values.max() - values.min())  # ticks would overlap
    xs = np.arange(len(values), dtype=float) if even else values
    xlabel = (xlabel or x) + (" (evenly spaced, not to scale)" if even else "")
    has_ratio = "test_intra_inter_mean" in table and table["test_intra_inter_mean"].notna().any()
    curves = paper_curves(table, spec)
    has_delta = "ours_delta" in table and bool(curves)
    panels = 1 + has_ratio + has_delta
    fig, axes = plt.subplots(1, panels, figsize=(4.8 * panels, 3.6), squeeze=False)
    axes = list(axes[0])
    ours = _ours_label(table)
    axes[0].errorbar(xs, table["test_acc_mean"], yerr=table["test_acc_std"], marker="o", capsize=4, label=ours)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_title("(a) accuracy, mean ± std over seeds")
    if has_ratio:
        axes[1].errorbar(xs, table["test_intra_inter_mean"], yerr=table["test_intra_inter_std"], marker="s",
                         capsize=4, color="tab:purple", label=ours)  # fmt: skip
        axes[1].set_ylabel("test intra/inter of the attention vectors")
        axes[1].set_title("(b) intra/inter (lower = tighter)")
    if has_delta:
        _delta_panel(axes[-1], xs, table, curves, spec, bars=False)
    for ax in axes:
        ax.set_xlabel(xlabel)
        if log2:
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        ax.set_xticklabels([value_key(v) for v in table[x]])
        ax.grid(alpha=0.3)
    return _finish(fig, path, title)


def plot_categories(
    table: pd.DataFrame, spec: dict, path: str | os.PathLike | None = None, title: str | None = None,
    labels: Sequence[str] | None = None,
):  # fmt: skip
    """A categorical sweep (CAM, loss forms, losses): bars with error bars over seeds.

    Left: our test accuracy. Right (when the sweep has a paper baseline): accuracy change against
    the baseline, ours as bars and the paper's on each of its datasets as markers.
    """
    varied = list(spec["varied"])
    labels = list(labels) if labels is not None else [group_label(row, varied) for _, row in table.iterrows()]
    curves = paper_curves(table, spec)
    has_delta = "ours_delta" in table and bool(curves)
    width = max(4.8, 0.9 * len(labels) + 2) * (1 + has_delta)
    fig, axes = plt.subplots(1, 1 + has_delta, figsize=(width, 3.8), squeeze=False)
    axes = list(axes[0])
    xs = np.arange(len(table))
    # points, not bars: a bar's length reads from zero, and an axis from zero would hide differences of a point
    axes[0].errorbar(xs, table["test_acc_mean"], yerr=table["test_acc_std"], fmt="o", ms=7, capsize=5,
                     color="tab:blue", label=_ours_label(table))  # fmt: skip
    low = np.nanmin(table["test_acc_mean"] - table["test_acc_std"].fillna(0))
    high = np.nanmax(table["test_acc_mean"] + table["test_acc_std"].fillna(0))
    pad = max(0.3, 0.15 * (high - low))
    axes[0].set_ylim(max(0.0, low - pad), min(100.0, high + pad))
    axes[0].set_xlim(-0.5, len(xs) - 0.5)
    axes[0].set_ylabel("test accuracy (%), axis not from 0")
    axes[0].set_title("accuracy, mean ± std over seeds")
    if has_delta:
        _delta_panel(axes[1], xs, table, curves, spec, bars=True)
    long_labels = max(len(s) for s in labels) > 12
    for ax in axes:
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=20 if long_labels else 0, ha="right" if long_labels else "center")
        ax.grid(alpha=0.3, axis="y")
    return _finish(fig, path, title)


def plot_study(runs: pd.DataFrame, order: Sequence[str] | None = None):
    """Mean ± std accuracy and intra/inter ratio per candidate, one colour per dataset; collapsed
    runs are counted above their candidate."""
    summary = summarize(runs)
    labels = list(order) if order is not None else list(dict.fromkeys(summary["label"]))
    datasets = list(dict.fromkeys(summary["dataset"]))
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.6 * len(labels) + 2), 6.4), sharex=True)
    width = 0.8 / max(1, len(datasets))
    for k, dataset in enumerate(datasets):
        frame = summary[summary["dataset"] == dataset].set_index("label").reindex(labels)
        xs = np.arange(len(labels)) + (k - (len(datasets) - 1) / 2) * width
        axes[0].errorbar(xs, frame["acc_mean"], yerr=frame["acc_std"], fmt="o", capsize=3, label=dataset)
        axes[1].errorbar(xs, frame["ratio_mean"], yerr=frame["ratio_std"], fmt="s", capsize=3, label=dataset)
        for x, (collapsed, n) in zip(xs, zip(frame["collapsed"], frame["n"])):
            if collapsed and not pd.isna(collapsed):
                axes[0].annotate(
                    f"{int(collapsed)}/{int(n)} coll.",
                    (x, axes[0].get_ylim()[0]),
                    fontsize=6,
                    rotation=90,
                    va="bottom",
                    ha="center",
                    color="tab:red",
                )
    split = runs["split"].dropna().iloc[0] if runs["split"].notna().any() else "val"
    axes[0].set_ylabel(f"{split} accuracy (%)")
    axes[1].set_ylabel(f"{split} intra/inter (attention)")
    axes[1].set_yscale("log")
    axes[1].set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_budget_curves(curves: pd.DataFrame):
    """The study's budget pilot: mean val accuracy per epoch (band: lowest to highest seed), one panel
    per dataset, one line per budget (see :func:`experiments.study.pilot_curves`)."""
    datasets = list(dict.fromkeys(curves["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 3.4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        frame = curves[curves["dataset"] == dataset]
        for epochs, runs in frame.groupby("epochs"):
            stats = runs.groupby("epoch")["val_acc"].agg(["mean", "min", "max"])
            ax.plot(stats.index, stats["mean"], label=f"{epochs} epochs (mean of {runs['seed'].nunique()} seeds)")
            ax.fill_between(stats.index, stats["min"], stats["max"], alpha=0.2)
        low = frame.groupby(["epochs", "epoch"])["val_acc"].mean().max() - 3
        ax.set(title=f"CE+CAM on {dataset}", xlabel="epoch", ylabel="val accuracy (%)", ylim=(low, None))
        ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
