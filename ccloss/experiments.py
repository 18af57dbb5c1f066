"""Experiments built from the one training loop: CE+CAM against CC-Loss over seeds.

``run_comparison`` is what ``python -m ccloss compare``, ``make run`` and notebook 02 call; a run
that already finished is loaded, an interrupted one resumes, so calling it again is cheap.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import pandas as pd

from .losses import LOSSES
from .paper import paper_accuracy
from .tables import aggregate, collect_runs, count_collapsed, format_mean_std
from .train import TrainConfig, train

__all__ = ["run_name", "config_for_loss", "run_comparison", "comparison_table", "evaluated_split"]


def run_name(loss: str, seed: int, cam: bool = True) -> str:
    """Stable run-directory name, e.g. ``cc_seed0`` or ``ce_nocam_seed1``."""
    return f"{loss}{'' if cam else '_nocam'}_seed{seed}"


#: TrainConfig fields that are hyperparameters of some losses only (None = the loss's default).
_LOSS_SPECIFIC = ("lam", "form", "group_size")


def config_for_loss(base: TrainConfig, loss: str, overrides: Optional[Mapping[str, Any]] = None) -> TrainConfig:
    """``base`` for ``loss``: ``overrides`` applied, and ``lam``/``form``/``group_size`` reset to
    None for a loss that has no such hyperparameter (CE has no lambda), so one base config
    serves every loss of a comparison."""
    config = dataclasses.replace(base, loss=loss, **dict(overrides or {}))
    takes = LOSSES[config.loss].defaults if config.loss in LOSSES else {}
    resets = {name: None for name in _LOSS_SPECIFIC if name not in takes and getattr(config, name) is not None}
    return dataclasses.replace(config, **resets) if resets else config


def run_comparison(
    base: TrainConfig, losses: Sequence[str], seeds: Sequence[int], out_dir: str | Path,
    per_loss: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> pd.DataFrame:
    """Train (or load) ``base`` for every loss and seed into ``out_dir/<loss>_seed<seed>``.

    ``per_loss`` maps a loss name to TrainConfig fields for that loss only (e.g.
    ``{"cc": {"lam": 0.5}}``); see :func:`config_for_loss`. Returns one row per run (see
    :func:`ccloss.tables.collect_runs`).
    """
    out_dir = Path(out_dir)
    per_loss = per_loss or {}
    run_dirs = []
    for loss in losses:
        for seed in seeds:
            run_dir = out_dir / run_name(loss, seed, base.cam)
            config = dataclasses.replace(
                config_for_loss(base, loss, per_loss.get(loss)),
                seed=int(seed), out=str(run_dir), resume=True, overwrite=False,
            )
            if not base.quiet:
                print(f"== {run_dir}", flush=True)
            train(config)
            run_dirs.append(run_dir)
    return collect_runs(run_dirs)


def evaluated_split(runs: pd.DataFrame) -> str:
    """``"val"`` when the runs were evaluated on the validation split only, else ``"test"``."""
    return "val" if "val_acc" in runs.columns and "test_acc" not in runs.columns else "test"


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean +/- std over seeds per loss, with the paper's number for the same setting beside it.

    Runs evaluated on the validation split (``eval_split="val"``) give ``val_*`` columns, and no
    paper column (the paper reports test accuracy)."""
    split = evaluated_split(runs)
    by = ["loss", "dataset", "backbone", "cam"]
    table = aggregate(runs, by=by, metrics=(f"{split}_acc", f"{split}_intra_inter"))
    collapsed = count_collapsed(runs, by, split)
    if collapsed is not None:
        table["collapsed"] = [int(collapsed.get(tuple(r[k] for k in by), 0)) for _, r in table.iterrows()]
    rows = []
    for _, row in table.iterrows():
        paper = paper_accuracy(row["loss"], row["backbone"], row["dataset"], bool(row["cam"]))
        out = {
            "loss": row["loss"] + ("+CAM" if row["cam"] and row["loss"] == "ce" else ""),
            "dataset": row["dataset"], "backbone": row["backbone"], "n": int(row["n"]),
            f"{split}_acc (%)": format_mean_std(row[f"{split}_acc_mean"], row[f"{split}_acc_std"]),
        }
        if f"{split}_intra_inter_mean" in row:
            out[f"{split} intra/inter"] = format_mean_std(row[f"{split}_intra_inter_mean"], row[f"{split}_intra_inter_std"], 3)
        if row.get("collapsed"):
            out[f"{split} intra/inter"] += f" ({int(row['collapsed'])} of {int(row['n'])} collapsed)"
        if split == "test":
            out["paper acc (%)"] = "" if paper is None else (
                f"{paper[0]:.2f}" if paper[1] is None else format_mean_std(*paper))
        rows.append(out)
    return pd.DataFrame(rows)
