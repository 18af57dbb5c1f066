"""Experiments built from the one training loop: CE+CAM against CC-Loss over seeds.

``run_comparison`` is what ``python -m ccloss compare``, ``make run`` and notebook 02 call; a run
that already finished is loaded, an interrupted one resumes, so calling it again is cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import TrainConfig
from ..train import fit
from .paper import paper_accuracy
from .tables import aggregate, collect_runs, count_collapsed, format_mean_std

__all__ = ["run_name", "comparison_config", "run_comparison", "comparison_table", "evaluated_split"]


def run_name(loss: str, seed: int, cam: bool = True) -> str:
    """Stable run-directory name, e.g. ``cc_seed0`` or ``ce_nocam_seed1``."""
    return f"{loss}{'' if cam else '_nocam'}_seed{seed}"


def run_comparison(
    base: TrainConfig,
    losses: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    per_loss: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Train (or load) ``base`` for every loss and seed into ``out_dir/<loss>_seed<seed>``.

    ``per_loss`` maps a loss name to TrainConfig fields for that loss only (e.g.
    ``{"cc": {"lam": 0.5}}``); see :meth:`TrainConfig.for_loss`. Returns one row per run (see
    :func:`ccloss.experiments.tables.collect_runs`).
    """
    out_dir = Path(out_dir)
    per_loss = per_loss or {}
    run_dirs = []
    for loss in losses:
        for seed in seeds:
            run_dir = out_dir / run_name(loss, seed, base.cam)
            config = base.for_loss(
                loss, **dict(per_loss.get(loss) or {}), seed=int(seed), out=str(run_dir), resume=True, overwrite=False
            )
            if not base.quiet:
                print(f"== {run_dir}", flush=True)
            fit(config)
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
    structure = (f"{split}_knn_acc", f"{split}_probe_acc", f"{split}_merged_pairs")
    table = aggregate(runs, by=by, metrics=(f"{split}_acc", f"{split}_intra_inter", *structure))
    collapsed = count_collapsed(runs, by, split)
    if collapsed is not None:
        table["collapsed"] = [int(collapsed.get(tuple(r[k] for k in by), 0)) for _, r in table.iterrows()]
    rows = []
    for _, row in table.iterrows():
        paper = paper_accuracy(row["loss"], row["backbone"], row["dataset"], bool(row["cam"]))
        out = {
            "loss": row["loss"] + ("+CAM" if row["cam"] and row["loss"] == "ce" else ""),
            "dataset": row["dataset"],
            "backbone": row["backbone"],
            "n": int(row["n"]),
            f"{split}_acc (%)": format_mean_std(row[f"{split}_acc_mean"], row[f"{split}_acc_std"]),
        }
        if f"{split}_intra_inter_mean" in row:
            out[f"{split} intra/inter"] = format_mean_std(
                row[f"{split}_intra_inter_mean"], row[f"{split}_intra_inter_std"], 3
            )
        if row.get("collapsed"):
            out[f"{split} intra/inter"] += f" ({int(row['collapsed'])} of {int(row['n'])} collapsed)"
        for metric, name, digits in zip(
            structure, ("attention 10-NN (%)", "attention probe (%)", "merged pairs"), (1, 1, 1)
        ):
            if f"{metric}_mean" in row and not pd.isna(row[f"{metric}_mean"]):
                out[f"{split} {name}"] = format_mean_std(row[f"{metric}_mean"], row[f"{metric}_std"], digits)
        if split == "test":
            out["paper acc (%)"] = (
                "" if paper is None else (f"{paper[0]:.2f}" if paper[1] is None else format_mean_std(*paper))
            )
        rows.append(out)
    return pd.DataFrame(rows)


def comparison_config(
    *,
    dataset: str = "digits",
    data_dir: str = "data",
    backbone: str = "resnet18",
    width_mult: float = 0.25,
    cam: bool = True,
    lam: float | None = 1.0,
    form: str | None = "ratio",
    group_size: int | None = None,
    loss_params: Mapping[str, Any] | None = None,
    batch_size: int = 32,
    epochs: int = 3,
    device: str = "auto",
    amp: bool = False,
    quiet: bool = True,
    **extra: Any,
):
    """``(base TrainConfig, per_loss)`` for :func:`ccloss.experiments.run_comparison`.

    ``lam``, ``form`` and ``group_size`` go to the ``cc`` loss only (other losses keep their own
    defaults); ``loss_params`` go to every loss; the stem and augmentation follow the dataset.
    ``extra`` holds further TrainConfig fields (``lr``, ``pretrained`` ...). Notebooks 02 and 04
    build their runs with this, so they find each other's run directories.
    """
    base = TrainConfig(
        dataset=str(dataset),
        data_dir=str(data_dir),
        backbone=str(backbone),
        width_mult=float(width_mult),
        cam=bool(cam),
        loss="cc",
        lam=None,
        form=None,
        group_size=None,
        loss_params=dict(loss_params or {}),
        batch_size=int(batch_size),
        epochs=int(epochs),
        device=str(device),
        amp=bool(amp),
        quiet=bool(quiet),
        **extra,
    )
    cc = {
        "lam": None if lam is None else float(lam),
        "form": form,
        "group_size": None if group_size is None else int(group_size),
    }
    return base.validate(), {"cc": cc}
