"""Result tables: collect finished run directories and aggregate them over seeds.

Every number is reported as mean +/- standard deviation over seeds (sample std, ddof=1; 0 for
a single seed) with the count n, so a reader sees how many runs stand behind it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pandas as pd

from .files import atomic_write, read_json
from .formatting import format_mean_std

__all__ = [
    "read_run",
    "iter_runs",
    "collect_runs",
    "aggregate",
    "count_collapsed",
    "format_mean_std",
    "markdown_table",
    "write_table",
]

#: Config fields copied into each run's row (what a table can group by).
CONFIG_COLUMNS = (
    "dataset",
    "backbone",
    "width_mult",
    "cam",
    "loss",
    "lam",
    "form",
    "group_size",
    "batch_size",
    "epochs",
    "seed",
    "loss_params",
    "eval_split",
    "cam_activation",
    "cam_min_hidden",
)


def read_run(run_dir: str | os.PathLike) -> tuple[dict, dict] | None:
    """``(config, metrics)`` of a run directory, or None when either file is missing or unreadable."""
    run_dir = Path(run_dir)
    try:
        return read_json(run_dir / "config.json"), read_json(run_dir / "metrics.json")
    except (OSError, ValueError):
        return None


def iter_runs(run_dirs: Iterable[str | os.PathLike]) -> Iterator[tuple[Path, dict, dict]]:
    """``(run_dir, config, metrics)`` for each readable run directory; the others are skipped."""
    for run_dir in run_dirs:
        loaded = read_run(run_dir)
        if loaded is not None:
            yield Path(run_dir), *loaded


def collect_runs(run_dirs: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per complete run: its config fields, ``final`` metrics and its directory."""
    rows = []
    for run_dir, config, metrics in iter_runs(run_dirs):
        if metrics.get("status") != "complete" or not metrics.get("final"):
            continue
        row = {name: config.get(name) for name in CONFIG_COLUMNS}
        row["loss_params"] = str(row["loss_params"] or "")
        row.update(metrics["final"])
        row["run_dir"] = str(run_dir)
        rows.append(row)
    return pd.DataFrame(rows)


def aggregate(
    runs: pd.DataFrame, by: Sequence[str], metrics: Sequence[str] = ("test_acc", "test_intra_inter")
) -> pd.DataFrame:
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


def count_collapsed(runs: pd.DataFrame, by: Sequence[str], split: str = "test") -> pd.Series | None:
    """Runs per group of ``by`` whose attention collapsed on ``split`` (``<split>_attention_collapsed``),
    or None for runs recorded before that flag existed."""
    column = f"{split}_attention_collapsed"
    if column not in runs.columns:
        return None
    flags = runs[column].astype("boolean").fillna(False).astype(int)
    return flags.groupby([runs[k] for k in by], dropna=False, sort=False).sum()


def markdown_table(frame: pd.DataFrame) -> str:
    """A plain GitHub Markdown table (no optional dependency such as tabulate)."""
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join("" if pd.isna(v) else str(v) for v in row.tolist()) + " |")
    return "\n".join(lines)


def write_table(
    table: pd.DataFrame, out_dir: str | os.PathLike, name: str = "summary", title: str | None = None
) -> tuple[Path, Path]:
    """Write ``table`` as ``<out_dir>/<name>.md`` (Markdown, :func:`markdown_table`)
    and ``<out_dir>/<name>.csv``, each atomically; returns both paths."""
    out_dir = Path(out_dir)
    text = (f"{title}\n\n" if title else "") + markdown_table(table) + "\n"
    md = atomic_write(out_dir / f"{name}.md", lambda f: f.write(text))
    csv = atomic_write(out_dir / f"{name}.csv", lambda f: table.to_csv(f, index=False))
    return md, csv
