"""What an evaluation measures besides accuracy: the intra/inter ratio of a whole set, collapse, and the
class measures of :mod:`ccloss.measures` (:func:`eval_record` every epoch, :func:`structure_record` after
the last, :func:`final_record` for metrics.json). Needs torch and numpy only: the class measures need
``pip install ccloss[analysis]`` and are skipped with a warning without it.
"""

import math
import time

import numpy as np
import torch

from .cc_loss import check_attention_labels
from .runtime import warn

__all__ = ["COLLAPSE_TOL", "STRUCTURE_KEYS", "RENAMED_KEYS", "dataset_intra_inter", "eval_record", "structure_record"]
__all__ += ["final_record", "upgrade_keys"]

#: Collapsed: d_inter at most this fraction of a reference (:func:`dataset_intra_inter`), relative so that a
#: narrow-band attention (mobilenet_v3_small: [0.45, 0.55], d_inter ~1e-5 at the start) is not flagged.
#: 1 %: in results/small_* the two runs whose attention shrank to one vector (lambda = 2: d_inter 7e-8 and
#: 1.5e-7, MAP@R ~30 %) ended at 0.25 % and 0.7 % of their d_inter at initialisation; every other run ended
#: above 5,000 times it (0.27 and up); a factor of 1e-3 missed those two.
COLLAPSE_TOL = 1e-2


def dataset_intra_inter(attention, labels, eps=0.0, collapse_tol=COLLAPSE_TOL, reference=None) -> dict[str, float]:
    """Ratio-form CC statistic of a whole set (e.g. a test set) in O(N C) memory.

    sum_{i,j in S} ||a_i - a_j||^2 = 2 |S| sum_i ||a_i||^2 - 2 ||sum_i a_i||^2 per class (intra) and over
    the set (total; inter = total - intra): {"d_intra", "d_inter", "ratio", "collapsed"}, equal to
    ``cc_statistics(..., form="ratio")`` without N x N (``ratio`` NaN when d_inter + eps is 0).
    ``collapsed``: d_inter <= ``collapse_tol`` * ``reference``, the same split's d_inter at initialisation
    (``fit`` passes it). Without one, the reference is the per-sample spread mean_i sum_c (a_ic - mean_c
    a_ic)^2; then an attention that barely varies between images from the start is flagged too: a set
    alone cannot tell narrow from shrunk.
    """
    if not (math.isfinite(collapse_tol) and collapse_tol >= 0):
        raise ValueError(f"collapse_tol must be a finite number >= 0, got {collapse_tol!r}")
    if reference is not None and not (math.isfinite(reference) and reference >= 0):
        raise ValueError(f"reference must be a finite d_inter >= 0 (or None), got {reference!r}")
    check_attention_labels(attention, labels)
    a = attention.detach().to(torch.float64).cpu()
    if reference is None:
        reference = float(((a - a.mean(dim=1, keepdim=True)) ** 2).sum(dim=1).mean())
    a = a - a.mean(dim=0, keepdim=True)
    labels, n, sq_norms = labels.detach().cpu().long(), a.shape[0], (a * a).sum(dim=1)

    def pair_sum(rows: torch.Tensor, norms: torch.Tensor) -> float:
        return float(2 * rows.shape[0] * norms.sum() - 2 * (rows.sum(dim=0) ** 2).sum())

    total, intra, intra_pairs = pair_sum(a, sq_norms), 0.0, 0
    for cls in labels.unique():
        mask = labels == cls
        intra += pair_sum(a[mask], sq_norms[mask])
        intra_pairs += int(mask.sum()) * (int(mask.sum()) - 1)
    inter_pairs = n * (n - 1) - intra_pairs
    d_intra = intra / intra_pairs if intra_pairs else 0.0
    d_inter = (total - intra) / inter_pairs if inter_pairs else 0.0
    ratio = d_intra / (d_inter + eps) if (d_inter + eps) > 0 else float("nan")
    collapsed = bool(d_inter <= collapse_tol * reference)
    return {"d_intra": d_intra, "d_inter": d_inter, "ratio": ratio, "collapsed": collapsed}


def eval_record(evaluation: dict, split: str, reference: float | None = None) -> dict:
    """``<split>_acc`` and, with the CAM, ``_intra_inter``, ``_d_inter``, ``_attention_collapsed`` (against
    ``reference``, the split's d_inter at initialisation: :func:`dataset_intra_inter`) and ``_se_dead_units``."""
    logits, labels = evaluation["logits"], evaluation["labels"]
    record = {f"{split}_acc": 100.0 * float((logits.argmax(1) == labels).float().mean())}
    if evaluation["attention"] is not None:
        stats = dataset_intra_inter(evaluation["attention"], labels, reference=reference)
        record[f"{split}_intra_inter"] = stats["ratio"]
        record[f"{split}_d_inter"] = stats["d_inter"]
        record[f"{split}_attention_collapsed"] = stats["collapsed"]
    if evaluation.get("se_max") is not None:
        record[f"{split}_se_dead_units"] = int((evaluation["se_max"] <= 0).sum())
        record["se_hidden_units"] = int(evaluation["se_max"].numel())
    return record


#: What :func:`structure_record` adds, after ``<split>_`` (:func:`ccloss.measures.class_structure`).
STRUCTURE_KEYS = ("knn_acc", "probe_acc", "precision_at_1", "map_at_r", "unseparated_pairs", "unseparated_pair_list")
STRUCTURE_KEYS += ("pair_accuracy_min", "class_pairs", "pair_geometry_min", "pair_geometry_below_2")
STRUCTURE_KEYS += ("pair_geometry_below_2_list", "classes", "class_distances")
#: Keys of runs recorded by ccloss 0.4 (after ``<split>_``) and their names now: read old results
#: through :func:`upgrade_keys`. The old "merged" count was the geometry figure s < 2, not a classifier.
RENAMED_KEYS = {"pair_sep_min": "pair_geometry_min", "merged_pairs": "pair_geometry_below_2"}
RENAMED_KEYS["merged_pair_list"] = "pair_geometry_below_2_list"


def upgrade_keys(record: dict) -> dict:
    """``record`` with the keys of :data:`RENAMED_KEYS` renamed (``test_merged_pairs`` ->
    ``test_pair_geometry_below_2``); other keys and all values unchanged."""
    renamed = {key: key[: -len(o)] + n for key in record for o, n in RENAMED_KEYS.items() if key.endswith("_" + o)}
    return {renamed.get(key, key): value for key, value in record.items()}


def structure_record(train_evaluation: dict, evaluation: dict, split: str) -> dict:
    """:func:`ccloss.measures.class_structure` of the evaluation split's attention (the training split's as
    references) and ``class_measures_seconds``; without the ``analysis`` extra {} and one warning."""
    try:
        from .measures import class_structure
    except ImportError as error:
        warn(f"class measures skipped ({error}): pip install ccloss[analysis]")
        return {}
    started = time.perf_counter()
    train, evaluated = (train_evaluation["attention"], train_evaluation["labels"]), evaluation["attention"]
    try:
        record = class_structure(*train, evaluated, evaluation["labels"], split=split)
    except ValueError as error:  # e.g. a reference set of one class: the run stands, the measures do not
        warn(f"class measures skipped: {error}")
        return {}
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
    kept = ("intra_inter", "d_inter", "attention_collapsed", "se_dead_units", *STRUCTURE_KEYS)
    for key in (*(f"{split}_{key}" for key in kept), "se_hidden_units", "class_measures_seconds"):
        if key in last:
            final[key] = last[key]
    return final
