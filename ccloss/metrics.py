"""What an evaluation measures besides accuracy: the intra/inter ratio of a whole set, collapse, and
the class structure of the attention vectors measured independently of the loss.

The training loop records the ratio and collapse on the evaluation split every epoch
(:func:`eval_record`), the class structure (:mod:`ccloss.separation`: attention k-NN and linear-probe
accuracy, class-pair separation) after the last epoch (:func:`structure_record`), and the ``final``
entry of a run's metrics.json (:func:`final_record`).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from .cc_loss import check_attention_labels
from .separation import class_structure

__all__ = ["COLLAPSE_TOL", "STRUCTURE_KEYS", "dataset_intra_inter", "eval_record", "structure_record", "final_record"]

#: Below this mean inter-class squared distance a set of attention vectors counts as collapsed: it
#: is the CCLoss default ``eps``, so there the loss's denominator is mostly ``eps`` and the ratio
#: form is minimised by shrinking every vector onto one point (docs/study_cc_default.md, notebook 06).
COLLAPSE_TOL = 1e-3


def dataset_intra_inter(
    attention: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 0.0,
    collapse_tol: float = COLLAPSE_TOL,
) -> dict[str, float]:
    """Ratio-form CC statistic of a whole set (e.g. a test set) in O(N C) memory.

    Uses sum_{i,j in S} ||a_i - a_j||^2 = 2 |S| sum_i ||a_i||^2 - 2 ||sum_i a_i||^2 over ordered
    pairs, per class for the intra part and over the whole set for the total; inter = total -
    intra. Returns {"d_intra", "d_inter", "ratio", "collapsed"} (means over unordered pairs,
    squared distances), equal to ``cc_statistics(..., form="ratio")`` on the same vectors without
    building N x N. ``ratio`` is NaN when d_inter + eps is 0 (0/0: every vector identical);
    ``collapsed`` is True when d_inter < ``collapse_tol``, so a tiny ratio of collapsed vectors is
    not mistaken for separated classes.
    """
    if not (math.isfinite(collapse_tol) and collapse_tol >= 0):
        raise ValueError(f"collapse_tol must be a finite number >= 0, got {collapse_tol!r}")
    check_attention_labels(attention, labels)
    a = attention.detach().to(torch.float64).cpu()
    a = a - a.mean(dim=0, keepdim=True)
    labels = labels.detach().cpu().long()
    n = a.shape[0]
    sq_norms = (a * a).sum(dim=1)

    def pair_sum(rows: torch.Tensor, norms: torch.Tensor) -> float:
        return float(2 * rows.shape[0] * norms.sum() - 2 * (rows.sum(dim=0) ** 2).sum())

    total = pair_sum(a, sq_norms)
    intra = 0.0
    intra_pairs = 0
    for cls in labels.unique():
        mask = labels == cls
        intra += pair_sum(a[mask], sq_norms[mask])
        intra_pairs += int(mask.sum()) * (int(mask.sum()) - 1)
    inter_pairs = n * (n - 1) - intra_pairs
    d_intra = intra / intra_pairs if intra_pairs else 0.0
    d_inter = (total - intra) / inter_pairs if inter_pairs else 0.0
    ratio = d_intra / (d_inter + eps) if (d_inter + eps) > 0 else float("nan")
    return {"d_intra": d_intra, "d_inter": d_inter, "ratio": ratio, "collapsed": bool(d_inter < collapse_tol)}


def eval_record(evaluation: dict, split: str) -> dict:
    """``<split>_acc`` and, with the CAM, ``<split>_intra_inter``, ``_d_inter``, ``_attention_collapsed``
    (d_inter below 1e-3) and ``_se_dead_units`` (hidden units that fire on no image of the set)."""
    logits, labels = evaluation["logits"], evaluation["labels"]
    record = {f"{split}_acc": 100.0 * float((logits.argmax(1) == labels).float().mean())}
    if evaluation["attention"] is not None:
        stats = dataset_intra_inter(evaluation["attention"], labels)
        record[f"{split}_intra_inter"] = stats["ratio"]
        record[f"{split}_d_inter"] = stats["d_inter"]
        record[f"{split}_attention_collapsed"] = stats["collapsed"]
    if evaluation.get("se_max") is not None:
        record[f"{split}_se_dead_units"] = int((evaluation["se_max"] <= 0).sum())
        record["se_hidden_units"] = int(evaluation["se_max"].numel())
    return record


#: What :func:`structure_record` adds, after ``<split>_`` (see :func:`ccloss.separation.class_structure`).
STRUCTURE_KEYS = (
    "knn_acc",
    "probe_acc",
    "pair_sep_min",
    "merged_pairs",
    "class_pairs",
    "merged_pair_list",
    "classes",
    "class_distances",
)


def structure_record(train_evaluation: dict, evaluation: dict, split: str) -> dict:
    """The class structure of the evaluation split's attention vectors, the training split's as the
    reference of the k-NN and the probe (:func:`ccloss.separation.class_structure`), and
    ``class_measures_seconds``, what computing it took (not the two evaluations)."""
    started = time.perf_counter()
    record = class_structure(
        train_evaluation["attention"],
        train_evaluation["labels"],
        evaluation["attention"],
        evaluation["labels"],
        split=split,
    )
    record["class_measures_seconds"] = time.perf_counter() - started
    return record


def final_record(history: list[dict], best: dict, split: str = "test") -> dict:
    """The ``final`` entry of metrics.json: the last epoch's numbers, the best epoch, timings."""
    last = history[-1]
    final = {
        f"{split}_acc": last[f"{split}_acc"],
        f"best_{split}_acc": best["acc"],
        "best_epoch": best["epoch"],
        "train_acc": last["train_acc"],
        "epochs": last["epoch"],
        "seconds": sum(r["seconds"] for r in history),
        "images_per_sec": float(np.mean([r["images_per_sec"] for r in history])),
    }
    for key in (
        f"{split}_intra_inter",
        f"{split}_d_inter",
        f"{split}_attention_collapsed",
        f"{split}_se_dead_units",
        "se_hidden_units",
        *(f"{split}_{key}" for key in STRUCTURE_KEYS),
        "class_measures_seconds",
    ):
        if key in last:
            final[key] = last[key]
    return final
