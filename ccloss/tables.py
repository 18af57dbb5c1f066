"""Result tables: collect finished run directories and aggregate them over seeds.

Every number is reported as mean +/- standard deviation over seeds (sample std, ddof=1; 0 for
a single seed) with the count n, so a reader sees how many runs stand behind it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from .atomic import read_json

__all__ = ["collect_runs", "aggregate", "format_mean_std", "markdown_table"]

#: Config fields copied into each run's row (what a table can group by).
CONFIG_COLUMNS = (
    "dataset", "backbone", "width_mult", "cam", "loss", "lam", "form", "group_size", "batch_size",
    "epochs", "seed", "loss_params",
)


def collect_runs(run_dirs: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per complete run: its config fields, ``final`` metrics and its directory."""
    rows = []
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        try:
            metrics = read_json(run_dir / "metrics.json")
            config = read_json(run_dir / "config.json")
        except (OSError, ValueError):
            continue
        if metrics.get("status") != "complete" or not metrics.get("final"):
            continue
        row = {name: config.get(name) for name in CONFIG_COLUMNS}
        row["loss_params"] = str(row["loss_params"] or "")
        row.update(metrics["final"])
        row["run_dir"] = str(run_dir)
        rows.append(row)
    return pd.DataFrame(rows)


def aggregate(runs: pd.DataFrame, by: Sequence[str], metrics: Sequence[str] = ("test_acc", "test_intra_inter")) -> pd.DataFrame:
    """Mean, std (ddof=1, 0 for one run) and n of each metric per group of ``by``."""
    if runs.empty:
        return pd.DataFrame(columns=[*by, "n"])
    present = [m for m in metrics if m in runs.columns]
    grouped = runs.groupby(list(by), dropna=False, sort=False)
    table = grouped.size().rename("n").to_frame()
    for metric in present:
        table[f"{metric}_mean"] = grouped[metric].mean()
        table[f"{metric}_std"] = grouped[metric].std(ddof=1).fillna(0.0)
    return table.reset_index()


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(frame: pd.DataFrame) -> str:
    """A plain GitHub Markdown table (no optional dependency such as tabulate)."""
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join("" if pd.isna(v) else str(v) for v in row.tolist()) + " |")
    return "\n".join(lines)
