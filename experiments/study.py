"""The CC-Loss default study (docs/study_cc_default.md): its tables and its pre-registered rule.

A study is one or more sweep folders whose points carry a ``label`` (the candidate) and a
``dataset``. :func:`load_study` reads them into one row per run; :func:`summarize` gives mean ± std
over seeds per candidate and dataset; :func:`select` applies the selection rule written down before
the runs:

- eligible: no run of the candidate collapsed (or failed), and on every dataset its mean
  intra/inter ratio is at most ``RATIO_FACTOR`` times the reference's (``ce_cam``);
- score: the mean over datasets of the per-dataset mean accuracy;
- winner: the highest score among the eligible; scores within ``TIE_PP`` points of the best go to
  the lowest mean ratio. With no eligible candidate the ratio condition is dropped.

``python -m experiments study runs/study_screen [more folders]`` prints both tables.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ccloss.metrics import upgrade_keys

from .files import read_json
from .tables import format_mean_std, markdown_table

__all__ = [
    "REFERENCE",
    "WIDE_REFERENCE",
    "TIE_PP",
    "RATIO_FACTOR",
    "load_study",
    "summarize",
    "select",
    "finalists",
    "study_markdown",
    "stage_three_checks",
    "followup_decision",
    "followup_decisions",
    "only_labels",
    "budget_rule",
    "pilot_curves",
]

REFERENCE = "ce_cam"  #: the label of CE+CAM, the reference (never selected)
WIDE_REFERENCE = "ce_cam_wide"  #: CE+CAM with the SE width floor of 32 (Part 3), never selected either
TIE_PP = 0.1  #: scores closer than this (percentage points) are a tie
RATIO_FACTOR = 0.5  #: eligible only at most this times the reference's intra/inter ratio
FINAL_SEEDS = 5  #: seeds per dataset of a finalist after stage 2
LAMBDA_LABELS = ("lam0.3", "lam0.1", "lam0.03")  #: the λ rows of the candidate table
#: Study columns read from the class-structure measures of a run (NaN for runs made before them), by the
#: names of ``ccloss.metrics.upgrade_keys`` (Part 5's ``merged_pairs`` is the s < 2 geometry count).
STRUCTURE_FIELDS = {
    "knn": "knn_acc",
    "probe": "probe_acc",
    "merged": "pair_geometry_below_2",
    "sep_min": "pair_geometry_min",
    "p_at_1": "precision_at_1",
    "map_r": "map_at_r",
    "unseparated": "unseparated_pairs",
}
#: Shown beside every study table, never ruled on: the field's measures of issue 25 (column -> its name).
BESIDE = {"p_at_1": "P@1 (%)", "map_r": "MAP@R (%)", "unseparated": "unseparated pairs (of 45)"}
UNMEASURED = "not measured"  #: what a table prints for a measure its runs predate


def _split_of(final: dict) -> str | None:
    for split in ("val", "test"):
        if f"{split}_acc" in final:
            return split
    return None


def _point_row(point_dir: Path, values: dict) -> dict | None:
    """One run of a study point; a failed point is a row that counts as collapsed."""
    row = {
        "label": values.get("label"),
        "dataset": values.get("dataset"),
        "seed": values.get("seed"),
        "point_dir": str(point_dir),
    }
    try:
        metrics = read_json(point_dir / "metrics.json")
    except (OSError, ValueError):
        metrics = None
    if metrics and metrics.get("status") == "complete" and metrics.get("final"):
        final = upgrade_keys(metrics["final"])
        split = _split_of(final)
        row.update(
            split=split,
            acc=final.get(f"{split}_acc"),
            ratio=final.get(f"{split}_intra_inter"),
            d_inter=final.get(f"{split}_d_inter"),
            dead_units=final.get(f"{split}_se_dead_units"),
            collapsed=bool(final.get(f"{split}_attention_collapsed", False)),
            failed=False,
            **{key: final.get(f"{split}_{name}", np.nan) for key, name in STRUCTURE_FIELDS.items()},
        )
        return row
    try:
        status = read_json(point_dir / "point.json").get("status")
    except (OSError, ValueError):
        status = None
    if status != "failed":
        return None  # not run yet
    row.update(split=None, acc=np.nan, ratio=np.nan, d_inter=np.nan, dead_units=np.nan, collapsed=True, failed=True)
    row.update({key: np.nan for key in STRUCTURE_FIELDS})
    return row


def load_study(sweep_dirs: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per finished (or failed) point of the study's sweep folders; points need a label."""
    rows = []
    for sweep_dir in map(Path, sweep_dirs):
        spec_path = sweep_dir / "sweep.json"
        if not spec_path.exists():
            raise FileNotFoundError(f"{spec_path} is missing: is {sweep_dir} a sweep folder?")
        for point in read_json(spec_path)["expanded"]:
            if "label" not in point["values"]:
                raise ValueError(f"{sweep_dir}: point {point['name']} has no label; a study's points are labelled")
            row = _point_row(sweep_dir / point["name"], point["values"])
            if row is not None:
                rows.append(row)
    runs = pd.DataFrame(rows)
    if not runs.empty and runs["split"].dropna().nunique() > 1:
        raise ValueError("the study mixes val and test runs; select on one split")
    return runs


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Per label and dataset: n, mean/std of accuracy, ratio, P@1, MAP@R and unseparated pairs (NaN for runs
    made before them), collapsed and failed counts."""
    grouped = runs.groupby(["label", "dataset"], sort=False)
    table = grouped.size().rename("n").to_frame()
    for metric in ("acc", "ratio", *BESIDE):
        table[f"{metric}_mean"] = grouped[metric].mean()
        table[f"{metric}_std"] = grouped[metric].std(ddof=1).fillna(0.0)
    table["collapsed"] = grouped["collapsed"].sum().astype(int)
    table["failed"] = grouped["failed"].sum().astype(int)
    return table.reset_index()


def _verdicts(summary: pd.DataFrame, reference: str, use_ratio: bool) -> pd.DataFrame:
    ref = summary[summary["label"] == reference].set_index("dataset")["ratio_mean"]
    datasets = sorted(summary["dataset"].unique())
    rows = []
    candidates = summary[~summary["label"].isin([reference, WIDE_REFERENCE])]
    for label, frame in candidates.groupby("label", sort=False):
        frame = frame.set_index("dataset")
        reasons = []
        if frame["collapsed"].sum():
            reasons.append(f"{int(frame['collapsed'].sum())} collapsed run(s)")
        missing = [d for d in datasets if d not in frame.index]
        if missing:
            reasons.append(f"no runs on {', '.join(missing)}")
        if use_ratio:
            for dataset in frame.index:
                limit = RATIO_FACTOR * ref.get(dataset, np.nan)
                if not frame.loc[dataset, "ratio_mean"] <= limit:
                    reasons.append(f"{dataset} ratio {frame.loc[dataset, 'ratio_mean']:.3f} > {limit:.3f}")
        rows.append(
            {
                "label": label,
                "score": frame["acc_mean"].mean(),
                "ratio": frame["ratio_mean"].mean(),
                "n": int(frame["n"].min()),
                "eligible": not reasons,
                "why not": "; ".join(reasons),
            }
        )
    return pd.DataFrame(rows)


def select(runs: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """The selection rule: every CC candidate with its score, eligibility and rank (1 = winner).

    Once stage 2 has run (some candidate has ``FINAL_SEEDS`` seeds per dataset), only those
    finalists are ranked; the others keep their stage-1 verdict with ``finalist`` False.

    ``ratio_rule`` in ``attrs`` says whether the ratio condition was applied (it is dropped only
    when no candidate meets it)."""
    summary = summarize(runs)
    if reference not in set(summary["label"]):
        raise ValueError(f"the study has no {reference!r} runs: the reference is needed for the ratio rule")
    verdicts = _verdicts(summary, reference, use_ratio=True)
    ratio_rule = bool(verdicts["eligible"].any())
    if not ratio_rule:
        verdicts = _verdicts(summary, reference, use_ratio=False)
    verdicts = verdicts.sort_values(["eligible", "score"], ascending=[False, False]).reset_index(drop=True)
    # after stage 2, only the finalists (5 seeds per dataset) compete for the winner
    verdicts["finalist"] = verdicts["n"] >= FINAL_SEEDS if (verdicts["n"] >= FINAL_SEEDS).any() else True
    eligible = verdicts[verdicts["eligible"] & verdicts["finalist"]]
    if not eligible.empty:
        tied = eligible[eligible["score"] >= eligible["score"].max() - TIE_PP]
        winner = tied.sort_values("ratio").index[0]
        verdicts = pd.concat([verdicts.loc[[winner]], verdicts.drop(index=winner)]).reset_index(drop=True)
    ranked = (verdicts["eligible"] & verdicts["finalist"]).to_numpy()
    verdicts["rank"] = [int(ranked[: i + 1].sum()) if ok else None for i, ok in enumerate(ranked)]
    verdicts.attrs["ratio_rule"] = ratio_rule
    return verdicts


def finalists(verdicts: pd.DataFrame, top: int = 3) -> dict:
    """Stage 2 of the study: the ``top`` eligible candidates, and the combination of the best
    eligible mechanism (not a λ row) with the best eligible λ row, when both exist."""
    eligible = verdicts[verdicts["eligible"]]
    chosen = list(eligible["label"][:top])
    mechanisms = [label for label in eligible["label"] if label not in LAMBDA_LABELS and label != "old_default"]
    lambdas = [label for label in eligible["label"] if label in LAMBDA_LABELS]
    combination = (mechanisms[0], lambdas[0]) if mechanisms and lambdas else None
    return {"finalists": chosen, "combination": combination}


def study_markdown(runs: pd.DataFrame, reference: str = REFERENCE) -> str:
    """The results table (every candidate and dataset, mean ± std, collapse count) and the ranking."""
    summary = summarize(runs)
    split = runs["split"].dropna().iloc[0] if runs["split"].notna().any() else "val"
    rows = []
    for _, r in summary.iterrows():
        rows.append(
            {
                "candidate": r["label"],
                "dataset": r["dataset"],
                "n": int(r["n"]),
                f"{split} acc (%)": format_mean_std(r["acc_mean"], r["acc_std"]),
                f"{split} intra/inter": format_mean_std(r["ratio_mean"], r["ratio_std"], 3),
                **{name: format_mean_std(r[f"{k}_mean"], r[f"{k}_std"], 1, UNMEASURED) for k, name in BESIDE.items()},
                "collapsed": f"{int(r['collapsed'])} of {int(r['n'])}",
            }
        )
    text = markdown_table(pd.DataFrame(rows))
    if split == "test":  # stage 3: reported beside the paper and checked, never used to choose
        if reference in set(summary["label"]):
            text += "\n\nStage 3 checks (issue 12's acceptance criteria), with the paper's MNIST ResNet18+CAM:\n\n"
            text += markdown_table(_format_checks(stage_three_checks(runs, reference)))
        if {WIDE_REFERENCE, REFERENCE} <= set(summary["label"]):
            text += "\n\nParts 3 and 4's rule (each candidate against CE+CAM with and without the SE width floor):\n\n"
            text += markdown_table(followup_decisions(runs).reset_index())
        return text
    if reference in set(summary["label"]) and len(summary["label"].unique()) > 1:
        verdicts = select(runs, reference)
        shown = verdicts.assign(
            score=verdicts["score"].map(lambda v: f"{v:.2f}"),
            ratio=verdicts["ratio"].map(lambda v: f"{v:.3f}"),
            rank=verdicts["rank"].map(lambda v: "" if pd.isna(v) else str(int(v))),
        )
        rule = "applied" if verdicts.attrs["ratio_rule"] else "dropped: no candidate met it"
        text += (
            f"\n\nSelection (score = mean over datasets of the mean {split} accuracy; ratio condition "
            f"{rule}):\n\n" + markdown_table(shown[["rank", "label", "score", "ratio", "n", "eligible", "why not"]])
        )
    return text


def stage_three_checks(runs: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """Stage 3's acceptance checks per CC candidate and dataset, against the reference (CE+CAM):

    - ``no_collapse``: no run collapsed or failed;
    - ``ratio_ok``: mean intra/inter <= ``RATIO_FACTOR`` x the reference's;
    - ``acc_ok``: mean accuracy >= the reference's mean - max(the two seed stds), i.e. within the
      seeds' spread of CE+CAM or better.

    ``paper_cc`` / ``paper_ce_cam``: the paper's MNIST ResNet18+CAM accuracies, on ``mnist5k`` rows
    only (our stand-in for MNIST; ``nan`` elsewhere).
    """
    summary = summarize(runs).set_index(["label", "dataset"])
    rows = []
    for (label, dataset), r in summary.iterrows():
        if label == reference or (reference, dataset) not in summary.index:
            continue
        ref = summary.loc[(reference, dataset)]
        on_mnist = dataset == "mnist5k"
        paper = {loss: _paper_mnist(loss) if on_mnist else np.nan for loss in ("cc", "ce")}
        rows.append(
            {
                "label": label,
                "dataset": dataset,
                "n": int(r["n"]),
                "acc_delta": r["acc_mean"] - ref["acc_mean"],
                "spread": max(r["acc_std"], ref["acc_std"]),
                "ratio_factor": r["ratio_mean"] / ref["ratio_mean"],
                "no_collapse": int(r["collapsed"]) == 0 and int(r["failed"]) == 0,
                "ratio_ok": r["ratio_mean"] <= RATIO_FACTOR * ref["ratio_mean"],
                "acc_ok": r["acc_mean"] >= ref["acc_mean"] - max(r["acc_std"], ref["acc_std"]),
                "paper_cc": paper["cc"],
                "paper_ce_cam": paper["ce"],
            }
        )
    return pd.DataFrame(rows)


def followup_decision(
    runs: pd.DataFrame, candidate: str = "se_wide", references: Sequence[str] = (WIDE_REFERENCE, REFERENCE)
) -> dict:
    """Part 3's pre-registered rule (docs/study_cc_default.md): ``candidate`` passes when it has no
    collapsed run on any dataset, its mean test intra/inter is at most ``RATIO_FACTOR`` x every
    reference's on every dataset, and on mnist5k its accuracy is within the spread of every
    reference's or better (the criteria of :func:`stage_three_checks`)."""
    labels = set(runs["label"])
    missing = sorted({candidate, *references} - labels)
    if missing:
        raise ValueError(f"the follow-up needs runs of {missing}; found {sorted(labels)}")
    verdict: dict = {"candidate": candidate}
    verdict["no_collapse"] = not runs.loc[runs["label"] == candidate, "collapsed"].any()  # failed runs count too
    for reference in references:
        checks = stage_three_checks(runs[runs["label"].isin([candidate, reference])], reference)
        checks = checks.set_index("dataset")
        verdict[f"ratio_ok vs {reference}"] = bool(checks["ratio_ok"].all())
        verdict[f"acc_ok vs {reference}"] = (
            bool(checks.loc["mnist5k", "acc_ok"]) if "mnist5k" in checks.index else False
        )
    verdict["passes"] = all(v for k, v in verdict.items() if k != "candidate")
    return verdict


def followup_decisions(runs: pd.DataFrame, references: Sequence[str] = (WIDE_REFERENCE, REFERENCE)) -> pd.DataFrame:
    """:func:`followup_decision` for every label of ``runs`` that is not a reference, indexed by candidate."""
    candidates = [label for label in runs["label"].unique() if label not in references]
    return pd.DataFrame([followup_decision(runs, label, references) for label in candidates]).set_index("candidate")


def only_labels(
    runs: pd.DataFrame, labels: Sequence[str], keep: Sequence[str] = (REFERENCE, WIDE_REFERENCE)
) -> pd.DataFrame:
    """The runs of ``labels`` and of the references in ``keep`` (Part 4 ranks two candidates only)."""
    unknown = sorted(set(labels) - set(runs["label"]))
    if unknown:
        raise ValueError(f"no runs labelled {unknown}; the folders hold {sorted(set(runs['label']))}")
    return runs[runs["label"].isin([*labels, *keep])].reset_index(drop=True)


def _paper_mnist(loss: str) -> float:
    from .paper import paper_accuracy

    found = paper_accuracy(loss, "resnet18", "mnist", cam=True)
    return np.nan if found is None else found[0]


def _format_checks(checks: pd.DataFrame) -> pd.DataFrame:
    def paper_delta(r):
        if np.isnan(r["paper_cc"]):
            return "n/a"
        return f"{r['paper_cc']:.2f} vs {r['paper_ce_cam']:.2f} ({r['paper_cc'] - r['paper_ce_cam']:+.2f})"

    return pd.DataFrame(
        {
            "candidate": checks["label"],
            "dataset": checks["dataset"],
            "n": checks["n"],
            "acc vs CE+CAM (pp)": checks["acc_delta"].map(lambda v: f"{v:+.2f}"),
            "seeds' spread (pp)": checks["spread"].map(lambda v: f"{v:.2f}"),
            "ratio / CE+CAM's": checks["ratio_factor"].map(lambda v: f"{v:.2f}"),
            "no collapse": checks["no_collapse"],
            "ratio <= half": checks["ratio_ok"],
            "acc within spread or better": checks["acc_ok"],
            "paper MNIST CC vs CE+CAM": checks.apply(paper_delta, axis=1),
        }
    )


def pilot_curves(sweep_dir: str | os.PathLike) -> pd.DataFrame:
    """The budget pilot's per-epoch val accuracy: one row per run and epoch (dataset, epochs, seed)."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for point in read_json(sweep_dir / "sweep.json")["expanded"]:
        try:
            metrics = read_json(sweep_dir / point["name"] / "metrics.json")
        except (OSError, ValueError):
            continue
        if metrics.get("status") != "complete":
            continue
        for record in metrics["history"]:
            rows.append(
                {
                    **{k: point["values"][k] for k in ("dataset", "epochs", "seed")},
                    "epoch": record["epoch"],
                    "val_acc": record["val_acc"],
                }
            )
    return pd.DataFrame(rows)


def budget_rule(curves: pd.DataFrame, short: int = 20, long: int = 40, tolerance: float = 0.3) -> dict:
    """The pre-registered budget rule: ``short`` epochs when, on every dataset, (a) the mean final val
    accuracy at ``short`` is within max(tolerance, the seeds' std at ``long``) of the mean at ``long``,
    and (b) the mean val accuracy of the ``short`` runs moves by less than ``tolerance`` over their
    last five epochs; else ``long``. Returns the epochs and the numbers per dataset."""
    checks = {}
    for dataset, frame in curves.groupby("dataset", sort=False):
        finals = frame[frame["epoch"] == frame["epochs"]].groupby("epochs")["val_acc"]
        mean_short, mean_long, std_long = finals.mean()[short], finals.mean()[long], finals.std(ddof=1)[long]
        curve = frame[frame["epochs"] == short].groupby("epoch")["val_acc"].mean()
        last5 = curve[curve.index > short - 5]
        checks[dataset] = {
            "mean_short": mean_short,
            "mean_long": mean_long,
            "std_long": std_long,
            "gap": mean_long - mean_short,
            "allowed_gap": max(tolerance, std_long),
            "last5_range": float(last5.max() - last5.min()),
        }
        checks[dataset]["ok"] = (
            abs(checks[dataset]["gap"]) <= checks[dataset]["allowed_gap"] and checks[dataset]["last5_range"] < tolerance
        )
    return {"epochs": short if all(c["ok"] for c in checks.values()) else long, "checks": checks}
