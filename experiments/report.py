"""Sweep reports: mean +/- std over seeds per point group, beside the paper's numbers, and plots.

``python -m experiments report runs/<sweep>`` writes ``report.csv`` (numbers) and ``report.md``
(a readable table) into the sweep folder. The sweep file's ``paper`` section says how to join
the paper's table (``ccloss/paper/*.csv``)::

    paper:
      table: lambda            # losses, cam, lambda or batch_size (ccloss.paper.PAPER_TABLES)
      match: {lambda: lam}     # paper column -> our parameter
      stand_in: {dataset: MNIST, backbone: VGG16+CAM}   # paper row shown for reference when our
                               # dataset is not in the paper (digits): other data, no difference taken
      baseline: {lam: 0}       # the group the deltas are taken against (ours and the paper's)
      note: free text printed under the table

The ``dataset``, ``backbone`` (+CAM) and ``loss`` columns of a paper table are matched to ours
implicitly (``ccloss.paper`` name maps). Our digits experiments have no paper number: the
report says so, and shows the stand-in row and the deltas, which are comparable in shape only.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ccloss.losses import PAPER_NAMES

from .files import atomic_write, read_json, write_json
from .paper import paper_backbone_name, paper_dataset_name, paper_table
from .tables import aggregate, collect_runs, count_collapsed, format_mean_std, markdown_table

__all__ = [
    "NO_PAPER",
    "load_sweep_runs",
    "paper_lookup",
    "report_table",
    "format_report",
    "write_report",
    "export_results",
    "group_label",
    "paper_curves",
    "paper_main_table",
]

CITATION = (
    "Song, Chang, Ma, Li, Tan. CC-Loss: Channel Correlation Loss for Image Classification. "
    "ICPR 2020, arXiv:2010.05469 (tables transcribed in ccloss/paper/)."
)
METRICS = ("test_acc", "test_intra_inter", "best_test_acc", "test_precision_at_1", "test_map_at_r")
METRICS += ("test_unseparated_pairs", "test_knn_acc", "test_probe_acc")
#: The class measures of the attention vectors (ccloss.measures) and their report columns, shown when recorded.
STRUCTURE_COLUMNS = {
    "test_precision_at_1": ("ours: P@1 (%)", 1),
    "test_map_at_r": ("ours: MAP@R (%)", 1),
    "test_unseparated_pairs": ("ours: unseparated pairs", 1),
}
#: What runs recorded before precision@1 existed; shown only for those.
OLDER_STRUCTURE_COLUMNS = {"test_knn_acc": ("ours: attention 10-NN (%)", 1), "test_probe_acc": ("ours: probe (%)", 1)}
CONTEXT = ("dataset", "backbone", "width_mult", "cam", "loss", "lam", "form", "group_size", "batch_size", "epochs")
_VALUE_COLUMNS = ("accuracy", "std", "note")


def NO_PAPER(dataset: str) -> str:
    return f"n/a (the paper has no {dataset} experiment)"


# --------------------------------------------------------------------------------------------
# Reading a sweep folder
# --------------------------------------------------------------------------------------------


def _spec(sweep_dir: Path) -> dict:
    path = sweep_dir / "sweep.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: is {sweep_dir} a sweep folder (python -m experiments sweep ...)?")
    return read_json(path)


def value_key(value: Any) -> str:
    from .sweep import format_value

    if isinstance(value, np.generic):
        value = value.item()
    return format_value(value)


def _context(row: Any, varied: Sequence[str]) -> dict:
    """Our values for one row of the table (what the paper join and the baseline look at)."""
    out = {}
    for column in (*CONTEXT, *varied):
        if column in row:
            value = row[column]
            out[column] = value.item() if isinstance(value, np.generic) else value
    return out


def load_sweep_runs(sweep_dir: str | os.PathLike) -> tuple[dict, pd.DataFrame]:
    """(sweep.json, one row per complete point: its values, config fields and final metrics).

    A sweep evaluated on the validation split (``eval_split: val``) has its ``val_*`` metrics under the
    ``test_*`` names the tables use, and ``spec["split"] = "val"`` says so (the titles then say val)."""
    sweep_dir = Path(sweep_dir)
    spec = _spec(sweep_dir)
    runs = collect_runs(sweep_dir / point["name"] for point in spec["expanded"])
    spec["split"] = "val" if "val_acc" in runs.columns and "test_acc" not in runs.columns else "test"
    if spec["split"] == "val":
        runs = runs.rename(columns={c: "test_" + c[len("val_") :] for c in runs.columns if c.startswith("val_")})
        runs = runs.rename(columns={"best_val_acc": "best_test_acc"})
    if runs.empty:
        return spec, runs
    values = {}
    for point in spec["expanded"]:
        values[str(sweep_dir / point["name"])] = point["values"]
    for key in spec["varied"]:
        runs[key] = [values[d].get(key) for d in runs["run_dir"]]
    runs["group"] = [_group_name(values[d], spec["varied"]) for d in runs["run_dir"]]
    runs["point"] = [Path(d).name for d in runs["run_dir"]]
    return spec, runs


def _group_name(values: dict, varied: Sequence[str]) -> str:
    return ",".join(f"{k}={value_key(values.get(k))}" for k in varied if k in values) or "all"


# --------------------------------------------------------------------------------------------
# The paper join
# --------------------------------------------------------------------------------------------


def _same(paper_value: Any, ours: Any) -> bool:
    if ours is None or (isinstance(paper_value, float) and math.isnan(paper_value)):
        return False
    try:
        return math.isclose(float(paper_value), float(ours), rel_tol=1e-9, abs_tol=1e-9)
    except (TypeError, ValueError):
        return str(paper_value) == str(ours)


def paper_lookup(paper: dict, context: dict, dataset: str | None = None) -> dict:
    """The paper's row for one group of ours.

    ``context`` holds our values (``dataset``, ``backbone``, ``cam``, ``loss`` and the ``match``
    keys). ``dataset`` (a paper name such as ``CIFAR-100``) looks up that dataset instead.
    Returns ``{acc, std, dataset, backbone, same_data, note}``; ``acc`` is NaN where the paper
    has no number (with the reason in ``note``).
    """
    table = paper_table(paper["table"])
    ours_dataset = paper_dataset_name(str(context.get("dataset")))
    same_data = ours_dataset is not None and dataset in (None, ours_dataset)
    wanted: dict[str, Any] = {}
    for column in table.columns:
        if column in _VALUE_COLUMNS:
            continue
        if column in (paper.get("match") or {}):
            wanted[column] = context.get(paper["match"][column])
        elif column == "dataset":
            wanted[column] = ours_dataset
        elif column == "backbone" and context.get("backbone") in ("resnet18", "vgg16"):
            wanted[column] = paper_backbone_name(context["backbone"], bool(context.get("cam")))
        elif column == "loss" and context.get("loss") in PAPER_NAMES:
            wanted[column] = PAPER_NAMES[context["loss"]]
    if ours_dataset is None:
        wanted.update(paper.get("stand_in") or {})
    if dataset is not None:
        wanted["dataset"] = dataset
    result = {
        "acc": float("nan"),
        "std": float("nan"),
        "dataset": wanted.get("dataset"),
        "backbone": wanted.get("backbone"),
        "same_data": same_data,
        "note": "",
    }
    if wanted.get("dataset") is None:
        result["note"] = NO_PAPER(context.get("dataset"))
        return result
    rows = table
    for column, value in wanted.items():
        rows = rows[rows[column].map(lambda v, value=value: _same(v, value)).astype(bool)]  # empty-safe
    if rows.empty:
        shown = ", ".join(f"{k}={v}" for k, v in wanted.items())
        result["note"] = f"not in the paper's {paper['table']} table ({shown})"
        return result
    if len(rows) > 1:
        raise ValueError(
            f"the paper's {paper['table']} table has {len(rows)} rows for {wanted}; add a `match` "
            f"entry to the sweep's paper section"
        )
    row = rows.iloc[0]
    if pd.isna(row["accuracy"]):
        result["note"] = "not reported in the paper"
        return result
    result["acc"] = float(row["accuracy"])
    result["std"] = float(row["std"]) if "std" in row and not pd.isna(row["std"]) else float("nan")
    if not same_data:
        result["note"] = f"{NO_PAPER(context.get('dataset'))}; shown: {result['dataset']}, {result['backbone']}"
    return result


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def _matches(values: dict, selector: dict) -> bool:
    return all(value_key(values.get(k)) == value_key(v) for k, v in selector.items())


def report_table(sweep_dir: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """(numbers, spec): one row per group of points that differ only by seed, in sweep order.

    Columns: the varied keys; ``n``; ``<metric>_mean``/``_std`` (ddof=1; 0 for n=1); the
    context (dataset, backbone, cam, ...); ``paper_acc``/``paper_std``/``paper_dataset``/
    ``paper_backbone``/``paper_same_data``/``paper_note``; ``diff`` (ours - paper, same data
    only); ``ours_delta``/``paper_delta`` (against the sweep's baseline group, if one).
    """
    spec, runs = load_sweep_runs(sweep_dir)
    varied = list(spec["varied"])
    order = []
    for point in spec["expanded"]:
        name = _group_name(point["values"], varied)
        if name not in order:
            order.append(name)
    if runs.empty:
        return pd.DataFrame(columns=["group", *varied, "n"]), spec
    table = aggregate(runs, by=["group"], metrics=METRICS)
    for metric in METRICS:  # runs whose metric is NaN (e.g. an undefined ratio) are counted apart
        if f"{metric}_mean" in table:
            counts = runs.groupby("group")[metric].count()
            table[f"{metric}_n"] = [int(counts.get(g, 0)) for g in table["group"]]
            table.loc[table[f"{metric}_n"] < 2, f"{metric}_std"] = float("nan")
    collapsed = count_collapsed(runs, ["group"])
    if collapsed is not None:
        table["collapsed"] = [int(collapsed.get(g, 0)) for g in table["group"]]
    table["_order"] = [order.index(g) for g in table["group"]]
    table = table.sort_values("_order").drop(columns="_order").reset_index(drop=True)
    first = runs.drop_duplicates("group").set_index("group")
    for key in varied:
        table.insert(1 + varied.index(key), key, [first.loc[g, key] for g in table["group"]])
    for column in CONTEXT:
        if column not in varied and column in first.columns:
            table[column] = [first.loc[g, column] for g in table["group"]]
    if spec.get("paper") and spec["split"] == "test":  # the paper reports test accuracy only
        _join_paper(table, spec, varied)
    return table, spec


def _join_paper(table: pd.DataFrame, spec: dict, varied: list) -> None:
    """The paper's row beside each of ours (``paper_*``, ``diff``) and, with a baseline, both deltas."""
    paper = spec["paper"]
    records = [paper_lookup(paper, _context(row, varied)) for _, row in table.iterrows()]
    for column in ("dataset", "backbone", "acc", "std", "same_data", "note"):
        table[f"paper_{column}"] = [r[column] for r in records]
    table["diff"] = [m - r["acc"] if r["same_data"] else float("nan") for m, r in zip(table["test_acc_mean"], records)]
    if not paper.get("baseline"):
        return
    ours_delta, paper_delta = [], []
    for (_, row), record in zip(table.iterrows(), records):
        base = _baseline_row(table, spec, row)
        ours_delta.append(float("nan") if base is None else row["test_acc_mean"] - base["test_acc_mean"])
        if base is None or record["dataset"] is None:  # the paper's delta on the dataset this row was joined with
            paper_delta.append(float("nan"))
        else:
            paper_delta.append(
                record["acc"] - paper_lookup(paper, _context(base, varied), dataset=record["dataset"])["acc"]
            )
    table["ours_delta"], table["paper_delta"] = ours_delta, paper_delta


def _baseline_row(table: pd.DataFrame, spec: dict, row: Any = None) -> pd.Series | None:
    """The baseline group of ``row``: the row whose values equal ``row``'s with the sweep's
    ``paper.baseline`` values put in (so each dataset/backbone of a sweep has its own baseline).
    Without ``row``: the baseline when there is exactly one. None when it is missing."""
    baseline = (spec.get("paper") or {}).get("baseline")
    if not baseline or table.empty:
        return None
    varied = list(spec["varied"])
    contexts = [(other, _context(other, varied)) for _, other in table.iterrows()]
    target = dict(baseline)
    if row is not None:  # the row's other varied values, except those the baseline rows leave unset (a CE form)
        candidates = [context for _, context in contexts if _matches(context, baseline)]
        kept = [k for k in varied if k not in baseline and any(not _missing(c.get(k)) for c in candidates)]
        target.update({k: v for k, v in _context(row, varied).items() if k in kept})
    hits = [other for other, context in contexts if _matches(context, target)]
    return hits[0] if len(hits) == 1 else None


def group_label(row: pd.Series | dict, varied: Sequence[str]) -> str:
    """A short label: ``CE+CAM`` for loss/cam groups, else ``lam=0.5``-style."""
    keys = [k for k in varied]
    if keys and set(keys) <= {"loss", "cam", "form"}:
        loss, cam, form = row.get("loss"), row.get("cam"), row.get("form") if "form" in keys else None
        name = PAPER_NAMES.get(loss, str(loss))
        with_cam = (loss == "cc") if _missing(cam) else bool(cam)
        return name + ("+CAM" if with_cam else "") + ("" if _missing(form) else f" ({form})")
    return ", ".join(f"{k}={value_key(row.get(k))}" for k in keys) or "all"


def _missing(value: Any) -> bool:
    """None or NaN: a key a point does not set (e.g. ``form`` of a CE point)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def baseline_text(baseline: dict) -> str:
    return ", ".join(f"{k}={value_key(v)}" for k, v in baseline.items())


def _mean_std(row: Any, metric: str, digits: int) -> str:
    """``mean ± std``; ``[k of n NaN]`` when some runs have no value (std needs two values)."""
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    count = int(row.get(f"{metric}_n", row["n"]))
    if count == 0:
        return f"NaN ({int(row['n'])} of {int(row['n'])})"
    text = f"{mean:.{digits}f}" if pd.isna(std) else format_mean_std(mean, std, digits)
    if count < int(row["n"]):
        text += f" [{int(row['n']) - count} of {int(row['n'])} NaN]"
    return text


def format_report(table: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The readable version of :func:`report_table` (strings; the columns the Markdown shows)."""
    varied = list(spec["varied"])
    split = spec.get("split", "test")
    paper = (spec.get("paper") or {}) if split == "test" else {}
    rows = []
    stand_in_used = (
        "paper_same_data" in table
        and (~table["paper_same_data"].astype(bool)).any()
        and table["paper_acc"].notna().any()
    )
    for _, row in table.iterrows():
        out: dict[str, Any] = {}
        for key in varied:
            out[key] = "" if _missing(row[key]) else value_key(row[key])
        out["n"] = int(row["n"])
        out[f"ours: {split} acc (%)"] = _mean_std(row, "test_acc", 2)
        if "test_intra_inter_mean" in table and table["test_intra_inter_mean"].notna().any():
            out[f"ours: {split} intra/inter"] = (
                ""
                if pd.isna(row["test_intra_inter_mean"]) and row.get("cam") is not None and not bool(row["cam"])
                else _mean_std(row, "test_intra_inter", 3)
            )
            if row.get("collapsed", 0) and not pd.isna(row.get("collapsed")):
                out[f"ours: {split} intra/inter"] += f" ({int(row['collapsed'])} of {int(row['n'])} collapsed)"
        for metric, (column, digits) in _structure_columns(table).items():
            if f"{metric}_mean" in table and table[f"{metric}_mean"].notna().any():
                out[column] = "" if pd.isna(row[f"{metric}_mean"]) else _mean_std(row, metric, digits)
        if paper:
            acc = (
                ""
                if pd.isna(row["paper_acc"])
                else (
                    f"{row['paper_acc']:.2f}"
                    if pd.isna(row["paper_std"])
                    else format_mean_std(row["paper_acc"], row["paper_std"])
                )
            )
            if row["paper_same_data"]:
                out["paper (%)"] = acc or row["paper_note"]
                out["ours − paper (pp)"] = "" if pd.isna(row["diff"]) else f"{row['diff']:+.2f}"
            else:
                out["paper (%)"] = NO_PAPER(row.get("dataset", "this"))
                out["ours − paper (pp)"] = "n/a"
            if stand_in_used:
                column = "paper on other data (%)"
                out[column] = (
                    ""
                    if row["paper_same_data"]
                    else (f"{acc} ({row['paper_dataset']}, {row['paper_backbone']})" if acc else row["paper_note"])
                )
            if "ours_delta" in table:
                base = baseline_text(paper["baseline"])
                out[f"Δ ours vs {base} (pp)"] = "" if pd.isna(row["ours_delta"]) else f"{row['ours_delta']:+.2f}"
                out[f"Δ paper vs {base} (pp)"] = "" if pd.isna(row["paper_delta"]) else f"{row['paper_delta']:+.2f}"
        rows.append(out)
    return pd.DataFrame(rows)


def _fixed_text(table: pd.DataFrame, spec: dict) -> str:
    parts = []
    for column in CONTEXT:
        if column in table and column not in spec["varied"] and table[column].nunique(dropna=False) == 1:
            value = table[column].iloc[0]
            if not _missing(value):
                parts.append(f"{column} {value_key(value)}")
    return ", ".join(parts)


def _measure_notes(table: pd.DataFrame, split: str = "test") -> list[str]:
    """The report's paragraphs on the intra/inter ratio and the class-structure measures, when shown."""
    lines: list[str] = []
    if "test_intra_inter_mean" in table and not table.empty and table["test_intra_inter_mean"].notna().any():
        lines += [
            f"{split.capitalize()} intra/inter: mean squared distance between the attention vectors of same-class "
            f"{split} images over that of different-class ones (lower: tighter classes). It is NaN for a run whose "
            "attention vectors are all identical (0/0); such runs are counted as `[k of n NaN]`. A run "
            "counts as *collapsed* when the evaluated set's mean inter-class distance falls below 1 % of its "
            "value at initialisation: its ratio then says nothing about separated classes (notebook 03).",
            "",
        ]
    if not table.empty and _recorded(table, "test_precision_at_1"):
        lines += [
            "Measured independently of the loss (ccloss.measures; a ratio can be lowered by pushing a few classes "
            "far away while others stay merged), on the attention vectors, with the training split's as "
            "references: P@1 and MAP@R (pytorch-metric-learning's AccuracyCalculator; Musgrave et al., 2020); "
            "unseparated pairs: class pairs whose held-out per-pair classifier (a shrinkage LDA fit on the "
            "training split's vectors of the two classes) reaches less than 95 % balanced accuracy "
            "(of K (K - 1) / 2 pairs for K classes).",
            "",
        ]
    elif not table.empty and _recorded(table, "test_knn_acc"):
        lines += [
            "Measured independently of the loss (runs from before precision@1 was recorded): attention 10-NN and "
            "probe: accuracy of a 10-nearest-neighbour vote and of a linear probe on the evaluated split's "
            "attention vectors, fit on the training split's.",
            "",
        ]
    return lines


def _recorded(table: pd.DataFrame, metric: str) -> bool:
    return f"{metric}_mean" in table and table[f"{metric}_mean"].notna().any()


def _structure_columns(table: pd.DataFrame) -> dict:
    """The class-measure columns to show: the current ones, or the older ones for runs without them."""
    return STRUCTURE_COLUMNS if _recorded(table, "test_precision_at_1") else OLDER_STRUCTURE_COLUMNS


def write_report(sweep_dir: str | os.PathLike) -> dict:
    """Write ``report.csv`` and ``report.md`` into the sweep folder; returns paths and the Markdown."""
    sweep_dir = Path(sweep_dir)
    table, spec = report_table(sweep_dir)
    expected = [p["name"] for p in spec["expanded"]]
    complete = set(load_sweep_runs(sweep_dir)[1].get("point", pd.Series(dtype=str)))
    missing = [name for name in expected if name not in complete]
    lines = [f"# Sweep `{spec['name']}`", ""]
    if spec.get("description"):
        lines += [spec["description"], ""]
    if not table.empty:
        fixed = _fixed_text(table, spec)
        if fixed:
            lines += [f"Fixed: {fixed}.", ""]
    lines += [
        f"Top-1 {spec.get('split', 'test')} accuracy at the last epoch, mean ± std over seeds (sample std, "
        "ddof=1; n = seeds). "
        f"{len(complete)} of {len(expected)} points complete.",
        "",
    ]
    lines += _measure_notes(table, spec.get("split", "test"))
    lines += [markdown_table(format_report(table, spec)) if not table.empty else "(no complete point yet)", ""]
    paper = spec.get("paper") if spec.get("split", "test") == "test" else None
    if paper:
        notes = [f"Paper: {CITATION} Table: `{paper['table']}`."]
        if "paper_same_data" in table and not table.empty and (~table["paper_same_data"].astype(bool)).any():
            notes.append(
                "Where our dataset is not one of the paper's (the embedded digits), there is no paper number "
                "to compare with; the paper's row on other data is shown for reference only, and only the "
                "deltas against the baseline are comparable in direction."
            )
        if paper.get("note"):
            notes.append(str(paper["note"]).strip())
        lines += [" ".join(notes), ""]
    if missing:
        lines += [
            f"Not complete ({len(missing)}): " + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""),
            "",
        ]
    if spec.get("source"):
        lines += [
            f"Reproduce: `python -m experiments sweep {spec['source']}` then "
            f"`python -m experiments report <out>/{spec['name']}`.",
            "",
        ]
    markdown = "\n".join(lines)
    csv_path, md_path = sweep_dir / "report.csv", sweep_dir / "report.md"
    atomic_write(csv_path, lambda f: table.to_csv(f, index=False))
    atomic_write(md_path, lambda f: f.write(markdown))
    return {"csv": csv_path, "md": md_path, "markdown": markdown, "table": table}


def _failed(point_dir: Path) -> bool:
    try:
        return read_json(point_dir / "point.json").get("status") == "failed"
    except (OSError, ValueError):
        return False


def export_results(sweep_dir: str | os.PathLike, dest: str | os.PathLike, command: str | None = None) -> Path:
    """Copy the small files of a sweep (sweep.json, report, each point's point/config/metrics JSON)
    to ``dest/<name>/``: what is worth committing. No checkpoints, no executed notebooks."""
    sweep_dir = Path(sweep_dir)
    spec = _spec(sweep_dir)
    target = Path(dest) / spec["name"]
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    root = sweep_dir.resolve()
    for name in ("sweep.json", "report.csv", "report.md"):
        if (sweep_dir / name).exists():
            shutil.copy2(sweep_dir / name, target / name)
    for point in spec["expanded"]:
        source = sweep_dir / point["name"]
        finished = (source / "metrics.json").exists()
        if not finished and not _failed(source):
            continue
        (target / point["name"]).mkdir()
        record = read_json(source / "point.json")
        for key in ("point_dir", "notebook_path", "pid"):
            record.pop(key, None)
        write_json(target / point["name"] / "point.json", record)
        if not finished:  # a failed point is a result too (e.g. a loss that became NaN): keep its record
            continue
        config = read_json(source / "config.json")
        out = Path(config.get("out", ""))
        with contextlib.suppress(ValueError):  # a run directory outside the sweep keeps its path
            config["out"] = str(out.resolve().relative_to(root.parent))
        write_json(target / point["name"] / "config.json", config)
        shutil.copy2(source / "metrics.json", target / point["name"] / "metrics.json")
    source_text = spec.get("source") or "<sweep file>"
    command = (
        command
        or f"python -m experiments sweep {source_text} && "
        f"python -m experiments report runs/{spec['name']} --export {dest}"
    )
    (target / "COMMAND.txt").write_text(command + "\n")
    return target


# --------------------------------------------------------------------------------------------
# The paper's curves (plotted by experiments.report_plots)
# --------------------------------------------------------------------------------------------


def paper_curves(table: pd.DataFrame, spec: dict) -> dict[str, pd.DataFrame]:
    """For each dataset of the paper's table: its accuracy and delta (vs the baseline) per group.

    Our digits groups have no paper number; these curves are the paper's own, on its datasets,
    looked up with our group values (and the stand-in backbone when ours has no paper twin).
    """
    paper = spec.get("paper")
    if not paper or table.empty:
        return {}
    datasets = [d for d in paper_table(paper["table"])["dataset"].dropna().unique()]
    varied = list(spec["varied"])
    curves = {}
    for dataset in datasets:
        records = [paper_lookup(paper, _context(row, varied), dataset=dataset) for _, row in table.iterrows()]
        accs = np.array([r["acc"] for r in records], dtype=float)
        if np.all(np.isnan(accs)):
            continue
        reference = []
        for _, row in table.iterrows():
            base = _baseline_row(table, spec, row)
            reference.append(
                float("nan") if base is None else paper_lookup(paper, _context(base, varied), dataset=dataset)["acc"]
            )
        reference = np.array(reference, dtype=float)
        label = dataset
        backbones = {r["backbone"] for r in records if r["backbone"] and not math.isnan(r["acc"])}
        if len(backbones) == 1:
            label += f", {backbones.pop()}"
        curves[label] = pd.DataFrame(
            {"group": list(table["group"]), "acc": accs, "std": [r["std"] for r in records], "delta": accs - reference}
        )
    return curves


# --------------------------------------------------------------------------------------------
# The paper's main-table layout (notebook 05)
# --------------------------------------------------------------------------------------------


def paper_main_table(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 layout: one row per loss, the paper's six columns beside ours.

    ``table`` is a :func:`report_table` of a losses sweep (varied ``loss``, maybe ``backbone``
    and ``dataset``). Our columns are named after our dataset/backbone; FICAL is marked as a
    reconstruction from the abstract. As in the paper, the CC-Loss row is the backbone with the CAM.
    """
    paper = paper_table("losses")
    by_paper_name = {v: k for k, v in PAPER_NAMES.items()}
    order = [by_paper_name[name] for name in paper["loss"].unique() if name in by_paper_name]  # the paper's row order
    columns = [(b, d) for d in paper["dataset"].unique() for b in ("VGG16", "ResNet18")]
    rows = []
    for loss in order:
        if "loss" in table and loss not in set(table["loss"]):
            continue
        name = PAPER_NAMES[loss] + (" (reconstruction)" if loss == "fical" else "")
        row: dict[str, Any] = {"loss": name}
        ours = table[table["loss"] == loss] if "loss" in table else table
        for _, r in ours.iterrows():
            backbone = r.get("backbone", "")
            name = paper_backbone_name(backbone, False) if backbone in ("resnet18", "vgg16") else backbone
            column = f"ours: {r.get('dataset', '')} {name}"
            row[column] = format_mean_std(r["test_acc_mean"], r["test_acc_std"]) + f" (n={int(r['n'])})"
        for backbone, dataset in columns:
            wanted = backbone + ("+CAM" if loss == "cc" else "")
            hit = paper[
                (paper["loss"] == PAPER_NAMES[loss]) & (paper["backbone"] == wanted) & (paper["dataset"] == dataset)
            ]
            value = (
                ""
                if hit.empty or pd.isna(hit["accuracy"].iloc[0])
                else format_mean_std(hit["accuracy"].iloc[0], hit["std"].iloc[0])
            )
            row[f"paper: {dataset} {backbone}"] = value or "not reported"
        rows.append(row)
    return pd.DataFrame(rows)
