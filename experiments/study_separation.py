"""Part 5 of the CC-Loss default study (docs/study_cc_default.md): its tables and pre-registered rule.

Part 5 judges candidates by measures the loss cannot game (:mod:`ccloss.separation`), read per run
by :func:`experiments.study.load_study` (columns ``knn``, ``probe``, ``merged`` (the s < 2 geometry count),
``sep_min``; P@1, MAP@R and unseparated pairs are reported beside, not ruled on):

- eligible: (a) no run collapsed or failed; (b) no run with a merged class pair; (c) on each dataset
  a mean accuracy of at least CE+CAM's mean minus CE+CAM's seed std;
- score: the mean over datasets of the mean attention 10-NN accuracy;
- finalists (stage B): the two eligible candidates with the best scores, the remaining places going
  to those meeting (a) and (c) with the fewest merged pairs (then the score);
- winner: among finalists eligible on 5 seeds per dataset, the best score; scores within
  :data:`TIE_PP` of the best go to the higher mean probe accuracy;
- decision on test (:func:`decision`): on mnist5k no collapse, no merged pair, 10-NN accuracy at least
  CE+CAM's + :data:`KNN_MARGIN_PP`, accuracy at least CE+CAM's mean minus its seed std.

``python -m experiments study FOLDERS --part5`` prints the tables and the rule's verdicts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .study import REFERENCE, UNMEASURED
from .tables import format_mean_std, markdown_table

__all__ = [
    "TIE_PP",
    "KNN_MARGIN_PP",
    "FINAL_SEEDS",
    "summary",
    "verdicts",
    "select",
    "finalists",
    "honest_best",
    "decision",
    "markdown",
    "pair_distance_shares",
]

TIE_PP = 0.5  #: scores (10-NN accuracy, points) closer than this go to the probe accuracy
KNN_MARGIN_PP = 5.0  #: on test the winner's 10-NN accuracy must beat CE+CAM's by this many points
FINAL_SEEDS = 5  #: seeds per dataset of a finalist after stage B
#: The candidate that is always a finalist beside the two best (the default when Part 5 began).
CURRENT_DEFAULT = "default"


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per label and dataset: n, mean/std of accuracy, 10-NN, probe, ratio, P@1, MAP@R and unseparated pairs
    (NaN for runs made before them); merged (s < 2) pairs: total, runs with any, mean of the least separated
    pair; collapsed and failed counts."""
    grouped = runs.groupby(["label", "dataset"], sort=False)
    table = grouped.size().rename("n").to_frame()
    for metric in ("acc", "knn", "probe", "ratio", "sep_min", "p_at_1", "map_r", "unseparated"):
        table[f"{metric}_mean"] = grouped[metric].mean()
        table[f"{metric}_std"] = grouped[metric].std(ddof=1).fillna(0.0)
    table["merged_total"] = grouped["merged"].sum()
    table["runs_merged"] = grouped["merged"].apply(lambda m: int((m.fillna(1) > 0).sum()))  # unmeasured: merged
    table["collapsed"] = grouped["collapsed"].sum().astype(int)
    table["failed"] = grouped["failed"].sum().astype(int)
    return table.reset_index()


def _reference(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    ref = table[table["label"] == reference].set_index("dataset")
    if ref.empty:
        raise ValueError(f"the study has no {reference!r} runs: the accuracy condition needs them")
    return ref


def verdicts(runs: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """One row per candidate (not the reference): conditions (a)-(c), score, probe, n, eligibility."""
    table = summary(runs)
    ref = _reference(table, reference)
    datasets = sorted(table["dataset"].unique())
    rows = []
    for label, frame in table[table["label"] != reference].groupby("label", sort=False):
        frame = frame.set_index("dataset")
        reasons = []
        no_collapse = int(frame["collapsed"].sum()) == 0
        if not no_collapse:
            reasons.append(f"{int(frame['collapsed'].sum())} collapsed or failed run(s)")
        no_merged = int(frame["runs_merged"].sum()) == 0
        if not no_merged:
            reasons.append(f"{int(frame['runs_merged'].sum())} run(s) with merged pairs")
        acc_ok = True
        for dataset in datasets:
            if dataset not in frame.index:
                reasons.append(f"no runs on {dataset}")
                acc_ok = False
                continue
            floor = ref.loc[dataset, "acc_mean"] - ref.loc[dataset, "acc_std"]
            if not frame.loc[dataset, "acc_mean"] >= floor:
                reasons.append(f"{dataset} acc {frame.loc[dataset, 'acc_mean']:.2f} < {floor:.2f}")
                acc_ok = False
        rows.append(
            {
                "label": label,
                "score": frame["knn_mean"].mean(),
                "probe": frame["probe_mean"].mean(),
                "merged_total": int(frame["merged_total"].sum()),
                "n": int(frame["n"].min()),
                "no_collapse": no_collapse,
                "no_merged": no_merged,
                "acc_ok": acc_ok,
                "eligible": not reasons,
                "why not": "; ".join(reasons),
            }
        )
    return pd.DataFrame(rows)


def select(runs: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """The verdicts ranked: once some candidate has :data:`FINAL_SEEDS` runs per dataset only those
    (the finalists) compete; ``rank`` 1 is the winner (None for the ineligible)."""
    table = verdicts(runs, reference).sort_values(["eligible", "score"], ascending=[False, False])
    table = table.reset_index(drop=True)
    staged = (table["n"] >= FINAL_SEEDS).any()
    table["finalist"] = table["n"] >= FINAL_SEEDS if staged else True
    competing = table[table["eligible"] & table["finalist"]]
    if not competing.empty:
        tied = competing[competing["score"] >= competing["score"].max() - TIE_PP]
        winner = tied.sort_values("probe", ascending=False).index[0]
        table = pd.concat([table.loc[[winner]], table.drop(index=winner)]).reset_index(drop=True)
    ranked = (table["eligible"] & table["finalist"]).to_numpy()
    table["rank"] = [int(ranked[: i + 1].sum()) if ok else None for i, ok in enumerate(ranked)]
    return table


def finalists(table: pd.DataFrame, top: int = 2) -> list[str]:
    """Stage B's candidates: the ``top`` eligible ones by score; places left go to those meeting (a)
    and (c) with the fewest merged pairs, then the higher score. The current default is added."""
    ordered = table.sort_values(["eligible", "score"], ascending=[False, False])
    chosen = list(ordered.loc[ordered["eligible"], "label"][:top])
    if len(chosen) < top:
        fallback = table[table["no_collapse"] & table["acc_ok"] & ~table["label"].isin(chosen)]
        fallback = fallback.sort_values(["merged_total", "score"], ascending=[True, False])
        chosen += list(fallback["label"][: top - len(chosen)])
    if CURRENT_DEFAULT in set(table["label"]) and CURRENT_DEFAULT not in chosen:
        chosen.append(CURRENT_DEFAULT)
    return chosen


def honest_best(table: pd.DataFrame) -> str | None:
    """Without a winner: the finalist (5 seeds) meeting (a) and (c) with the fewest merged pairs, then
    the best score; None when no finalist meets both."""
    ok = table[table["finalist"] & table["no_collapse"] & table["acc_ok"]]
    if ok.empty:
        return None
    return str(ok.sort_values(["merged_total", "score"], ascending=[True, False])["label"].iloc[0])


def decision(runs: pd.DataFrame, candidate: str, reference: str = REFERENCE) -> pd.DataFrame:
    """The test decision's checks for ``candidate``, per dataset (mnist5k decides; digits is reported)."""
    table = summary(runs)
    ref = _reference(table, reference)
    rows = []
    for dataset, r in table[table["label"] == candidate].set_index("dataset").iterrows():
        floor = ref.loc[dataset, "acc_mean"] - ref.loc[dataset, "acc_std"]
        knn_gain = r["knn_mean"] - ref.loc[dataset, "knn_mean"]
        checks = {
            "no collapse": int(r["collapsed"]) == 0,
            "no merged pair": int(r["runs_merged"]) == 0,
            f"10-NN >= CE+CAM + {KNN_MARGIN_PP:g}": bool(knn_gain >= KNN_MARGIN_PP),
            "acc within CE+CAM's spread or better": bool(r["acc_mean"] >= floor),
        }
        rows.append(
            {
                "candidate": candidate,
                "dataset": dataset,
                "n": int(r["n"]),
                "acc vs CE+CAM (pp)": r["acc_mean"] - ref.loc[dataset, "acc_mean"],
                "CE+CAM std (pp)": ref.loc[dataset, "acc_std"],
                "10-NN vs CE+CAM (pp)": knn_gain,
                "runs with merged pairs": int(r["runs_merged"]),
                **checks,
                "passes": all(checks.values()),
            }
        )
    return pd.DataFrame(rows)


def _format_summary(table: pd.DataFrame, split: str) -> pd.DataFrame:
    def column(key, digits):
        return [format_mean_std(r[f"{key}_mean"], r[f"{key}_std"], digits, UNMEASURED) for _, r in table.iterrows()]

    return pd.DataFrame(
        {
            "candidate": table["label"],
            "dataset": table["dataset"],
            "n": table["n"],
            f"{split} acc (%)": column("acc", 2),
            "P@1 (%)": column("p_at_1", 1),
            "MAP@R (%)": column("map_r", 1),
            "unseparated pairs (of 45)": column("unseparated", 1),
            "attention 10-NN (%)": column("knn", 1),
            "attention probe (%)": column("probe", 1),
            "runs with s < 2 pairs": [f"{int(r['runs_merged'])} of {int(r['n'])}" for _, r in table.iterrows()],
            "s < 2 pairs per run": (table["merged_total"] / table["n"]).map(lambda v: f"{v:.1f}"),
            "least separated pair s": column("sep_min", 2),
            f"{split} intra/inter": column("ratio", 3),
            "collapsed": [f"{int(r['collapsed'])} of {int(r['n'])}" for _, r in table.iterrows()],
        }
    )


def markdown(runs: pd.DataFrame, reference: str = REFERENCE, decide: bool = True) -> str:
    """Part 5's table, then (``decide``) on val the ranking and stage B's finalists, on test each candidate's
    checks."""
    split = runs["split"].dropna().iloc[0] if runs["split"].notna().any() else "val"
    text = markdown_table(_format_summary(summary(runs), split))
    if not decide or reference not in set(runs["label"]) or runs["label"].nunique() < 2:
        return text
    if split == "test":
        checks = pd.concat([decision(runs, label, reference) for label in runs["label"].unique() if label != reference])
        shown = checks.round(2).replace({True: "yes", False: "**no**"})
        return text + "\n\nPart 5's decision (mnist5k decides; digits is reported):\n\n" + markdown_table(shown)
    table = select(runs, reference)
    shown = table.assign(
        score=table["score"].map(lambda v: f"{v:.2f}"),
        probe=table["probe"].map(lambda v: f"{v:.2f}"),
        rank=table["rank"].map(lambda v: "" if pd.isna(v) else str(int(v))),
    )
    columns = ["rank", "label", "score", "probe", "merged_total", "n", "eligible", "why not"]
    text += "\n\nPart 5's rule (score = mean over datasets of the mean attention 10-NN accuracy):\n\n"
    text += markdown_table(shown[columns])
    if not (table["n"] >= FINAL_SEEDS).any():
        text += f"\n\nStage B's finalists (with {REFERENCE}): {', '.join(finalists(table))}"
    elif not (table["rank"] == 1).any():
        text += f"\n\nNo finalist is eligible on 5 seeds: no winner; the honest best is {honest_best(table)}"
    else:
        text += f"\n\nThe winner (rank 1, stage C runs it): {table.loc[table['rank'] == 1, 'label'].iloc[0]}"
    return text


def pair_distance_shares(distances, top: int = 5) -> dict:
    """The one-line argument, numerically: of the sum over class pairs of the mean inter-class distance
    D_ab, the share the ``top`` farthest pairs carry (against ``top`` / pairs were all pairs alike), and
    the share the merged pairs (s_ab < 2) carry, with their number.

    ``distances`` is a class x class distance matrix (metrics.json's ``<split>_class_distances``)."""
    from ccloss.measures import GEOMETRY_THRESHOLD as MERGE_THRESHOLD
    from ccloss.measures import geometry_from_distances as separation_from_distances

    dist = np.asarray([[np.nan if v is None else v for v in row] for row in distances], dtype=np.float64)
    upper = np.triu_indices(len(dist), k=1)
    values = dist[upper]
    merged = separation_from_distances(dist, np.arange(len(dist))).matrix[upper] < MERGE_THRESHOLD
    total = values.sum()
    if not total > 0:  # a collapsed set: every distance 0, no share to speak of
        nan = float("nan")
        return {"pairs": len(values), "top": top, "top_share": nan, "equal_share": top / len(values),
                "merged_pairs": int(merged.sum()), "merged_share": nan, "median_over_mean": nan}  # fmt: skip
    return {
        "pairs": len(values),
        "top": top,
        "top_share": float(np.sort(values)[::-1][:top].sum() / total),
        "equal_share": top / len(values),
        "merged_pairs": int(merged.sum()),
        "merged_share": float(values[merged].sum() / total),
        "median_over_mean": float(np.median(values) / values.mean()),
    }
