"""Experiments built from the one training loop: CE+CAM against CC-Loss over seeds.

``run_comparison`` is what ``python -m experiments compare``, ``make run`` and notebook 02 call; a run
that already finished is loaded, an interrupted one resumes, so calling it again is cheap. A *row* is a
named setting (``ce``, ``cc``, ``cc_ratio``: :data:`ROWS`); its runs go to ``<out>/<row>_seed<seed>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ccloss.config import TrainConfig
from ccloss.train import fit

from .paper import paper_accuracy
from .tables import aggregate, collect_runs, count_collapsed, format_mean_std

__all__ = ["ROWS", "run_name", "row_label", "comparison_config", "run_comparison", "comparison_table"]
__all__ += ["evaluated_split"]

#: Notebook 02's rows beyond a plain loss name: row -> the objective (``loss``) and its fixed fields.
#: ``cc_ratio`` is the paper's formula as reconstructed (``CCLoss(form="ratio")``) with the package's
#: lambda, SE floor and relative eps; ``cc`` is the package default, the class-pair form.
ROWS: dict[str, dict[str, Any]] = {"cc_ratio": {"loss": "cc", "form": "ratio"}}
#: The table's class measures (``<split>_`` + key), their column names and decimals.
MEASURES = (("precision_at_1", "P@1 (%)", 2), ("map_at_r", "MAP@R (%)", 2), ("unseparated_pairs", "unseparated", 1))


def run_name(loss: str, seed: int, cam: bool = True) -> str:
    """Stable run-directory name of a row (a loss name or a key of :data:`ROWS`), e.g. ``cc_seed0``,
    ``cc_ratio_seed2`` or ``ce_nocam_seed1``."""
    return f"{loss}{'' if cam else '_nocam'}_seed{seed}"


def run_comparison(
    base: TrainConfig,
    losses: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    per_loss: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Train (or load) ``base`` for every row of ``losses`` and every seed into ``out_dir/<row>_seed<seed>``.

    ``per_loss`` maps a row to TrainConfig fields for that row only (e.g. ``{"cc": {"lam": 0.5}}``); a
    ``"loss"`` entry names the row's objective (default: the row's own name), so two rows can train the
    same loss with different settings; see :meth:`TrainConfig.for_loss`. Returns one row per run (see
    :func:`experiments.tables.collect_runs`).
    """
    out_dir = Path(out_dir)
    per_loss = per_loss or {}
    run_dirs = []
    for row in losses:
        fields = dict(per_loss.get(row) or {})
        loss = fields.pop("loss", row)
        for seed in seeds:
            run_dir = out_dir / run_name(row, seed, base.cam)
            config = base.for_loss(loss, **fields, seed=int(seed), out=str(run_dir), resume=True, overwrite=False)
            if not base.quiet:
                print(f"== {run_dir}", flush=True)
            fit(config)
            run_dirs.append(run_dir)
    return collect_runs(run_dirs)


def evaluated_split(runs: pd.DataFrame) -> str:
    """``"val"`` when the runs were evaluated on the validation split only, else ``"test"``."""
    return "val" if "val_acc" in runs.columns and "test_acc" not in runs.columns else "test"


def row_label(loss: str, form: Any, cam: bool) -> str:
    """The table's name of a run: ``ce+CAM`` (CE with the CAM), ``cc`` (CC-Loss's default form) or
    ``cc (ratio)`` (a form given explicitly)."""
    if loss == "ce" and cam:
        return "ce+CAM"
    return loss if form is None or pd.isna(form) else f"{loss} ({form})"


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean +/- std over seeds per row (:func:`row_label`): accuracy, P@1, MAP@R, unseparated class pairs
    (held-out per-pair classifier, :mod:`ccloss.measures`), intra/inter ratio, collapsed runs; on test, the
    paper's number beside CE+CAM and the paper's ratio form (the paper has no class-pair form)."""
    split = evaluated_split(runs)
    runs = runs.assign(row=[row_label(r["loss"], r.get("form"), bool(r["cam"])) for _, r in runs.iterrows()])
    by = ["row", "loss", "dataset", "backbone", "cam"]
    measures = [(f"{split}_{key}", name, digits) for key, name, digits in MEASURES]
    metrics = (f"{split}_acc", *(m for m, _, _ in measures), f"{split}_intra_inter")
    table = aggregate(runs, by=by, metrics=metrics)
    collapsed = count_collapsed(runs, by, split)
    rows = []
    for _, row in table.iterrows():
        out = {"loss": row["row"], "dataset": row["dataset"], "backbone": row["backbone"], "n": int(row["n"])}
        out[f"{split}_acc (%)"] = format_mean_std(row[f"{split}_acc_mean"], row[f"{split}_acc_std"])
        for metric, name, digits in measures:
            if f"{metric}_mean" in row and not pd.isna(row[f"{metric}_mean"]):
                out[f"{split} {name}"] = format_mean_std(row[f"{metric}_mean"], row[f"{metric}_std"], digits)
        if f"{split}_intra_inter_mean" in row:
            ratio = format_mean_std(row[f"{split}_intra_inter_mean"], row[f"{split}_intra_inter_std"], 3)
            count = 0 if collapsed is None else int(collapsed.get(tuple(row[k] for k in by), 0))
            out[f"{split} intra/inter"] = ratio + (f" ({count} of {int(row['n'])} collapsed)" if count else "")
        if split == "test":
            out["paper acc (%)"] = _paper_cell(row["row"], row["loss"], row["backbone"], row["dataset"], row["cam"])
        rows.append(out)
    return pd.DataFrame(rows)


def _paper_cell(label: str, loss: str, backbone: str, dataset: str, cam: bool) -> str:
    """The paper's accuracy beside a row of the same setting: every loss at its own settings, CC-Loss only
    in its ratio form (the paper has no class-pair form), none beside a row of another form."""
    same = label in (loss, "ce+CAM") if loss != "cc" else label == "cc (ratio)"
    paper = paper_accuracy(loss, backbone, dataset, bool(cam)) if same else None
    if paper is None:
        return ""
    return f"{paper[0]:.2f}" if paper[1] is None or math.isnan(paper[1]) else format_mean_std(paper[0], paper[1])


def comparison_config(
    *,
    lam: float | None = None,
    form: str | None = None,
    group_size: int | None = None,
    quiet: bool = True,
    **fields: Any,
) -> tuple[TrainConfig, dict]:
    """``(base TrainConfig, per_loss)`` for :func:`run_comparison`.

    ``lam``, ``form`` and ``group_size`` go to the ``cc`` row only, ``lam`` and ``group_size`` also to the
    ``cc_ratio`` row (its form is the paper's ratio); other losses keep their own defaults (None = the
    criterion's own default, as in TrainConfig); ``fields`` are further TrainConfig fields (``dataset``,
    ``epochs``, ``loss_params`` for every loss ...), each defaulting to TrainConfig's. Only ``quiet``
    differs (True: no progress bars in notebooks). Notebooks 02 and 05 build their runs with this, so
    they find each other's run directories.
    """
    base = TrainConfig(**{**fields, "loss": "cc", "lam": None, "form": None, "group_size": None, "quiet": quiet})
    per_loss = {"cc": {"lam": lam, "form": form, "group_size": group_size}}
    per_loss.update({row: {**spec, "lam": lam, "group_size": group_size} for row, spec in ROWS.items()})
    return base.validate(), per_loss
