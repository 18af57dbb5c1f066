"""Print the README's numbers from the committed files, so that they can be refreshed after a rerun.

``python -m tools.readme_numbers`` from the repository root prints (1) the take-home of the runs of this
repository, CE+CAM against the paper's ratio and the class-pair form on the test split (mean ± sample std
over seeds, ddof = 1, as the sweep reports), read from ``results/``: the CPU sweep the notebooks read
(``small_cam``, with every class measure) and the study's 40-epoch stage C, and (2) each notebook's
measured run time from its papermill metadata (the ``make run`` that executed the committed notebooks).
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
#: (row, results folder, the point's label in it): stage C of the study's Part 5, and Part 4's test of
#: the ratio, which stands in where stage C has fewer than MIN_SEEDS runs of the ratio.
ROWS = (
    ("CE+CAM", "study_part5_test", "ce_cam"),
    ("the paper's ratio (λ 0.1, SE floor 32)", "study_part5_test", "default"),
    ("the class-pair form (λ 0.1, SE floor 32)", "study_part5_test", "pair_ratio"),
)
FALLBACK = {"default": ("study_combined_test", "se_wide+lam0.1")}
MIN_SEEDS = 5
DATASETS = ("mnist5k", "digits")
#: metrics.json ``final`` keys -> (column, decimals); a key that no run has prints as "not measured".
MEASURES = {
    "test_acc": ("test acc (%)", 2),
    "test_intra_inter": ("intra/inter", 3),
    "test_knn_acc": ("attention 10-NN (%)", 1),
    "test_probe_acc": ("attention probe (%)", 1),
    "test_precision_at_1": ("P@1 (%)", 1),
    "test_map_at_r": ("MAP@R (%)", 1),
    "test_unseparated_pairs": ("unseparated pairs (of 45)", 1),
}
#: The study's columns (its runs predate P@1, MAP@R and the per-pair classifier: "not measured").
COLUMNS = tuple((key, *MEASURES[key]) for key in MEASURES if key != "test_intra_inter")


def read_points(folder: str, label: str, dataset: str) -> list[dict]:
    """The ``final`` metrics of the complete runs of one label and dataset in ``results/<folder>``."""
    finals = []
    for path in sorted((RESULTS / folder).glob(f"label={label},dataset={dataset},seed=*/metrics.json")):
        metrics = json.loads(path.read_text())
        if metrics.get("status") == "complete":
            finals.append(metrics["final"])
    return finals


def mean_std(values: list[float], digits: int) -> str:
    """``mean ± std`` (sample std); a single value has no spread and prints alone."""
    if not values:
        return "not measured"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (n = 1)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(dataset: str) -> list[str]:
    """The take-home table of one dataset, as markdown lines, then the lines saying where each row is from."""
    head = ["", "n", *(name for _, name, _ in COLUMNS), "runs with s < 2 merged pairs"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    notes = []
    for row, folder, label in ROWS:
        finals = read_points(folder, label, dataset)
        source = f"results/{folder} ({label})"
        if len(finals) < MIN_SEEDS and label in FALLBACK:
            fallback = read_points(*FALLBACK[label], dataset)
            notes.append(
                f"{row}: {len(finals)} of {MIN_SEEDS} runs in results/{folder}; its accuracy is from "
                f"results/{FALLBACK[label][0]} ({FALLBACK[label][1]}, n = {len(fallback)}), "
                "its measures from those runs"
            )
            finals_acc, finals = fallback, finals
        else:
            finals_acc = finals
            notes.append(f"{row}: {source}, n = {len(finals)}")
        cells = [row, str(len(finals_acc))]
        for key, _, digits in COLUMNS:
            values = [f[key] for f in (finals_acc if key == "test_acc" else finals) if f.get(key) is not None]
            fewer = f" (n = {len(values)})" if 1 < len(values) < len(finals_acc) else ""
            cells.append(mean_std(values, digits) + fewer)
        merged = [f["test_merged_pairs"] for f in finals if f.get("test_merged_pairs") is not None]
        cells.append(f"{sum(m > 0 for m in merged)} of {len(merged)}" if merged else "not measured")
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [f"- {note}" for note in notes]


#: The three rows of the CPU sweep the notebooks read (results/small_cam): row -> its points' name prefix.
SMALL_SWEEP = "small_cam"
SMALL_ROWS = (
    ("CE+CAM", "loss=ce,cam=true,seed="),
    ("CC-Loss, the paper's ratio", "loss=cc,cam=true,form=ratio,seed="),
    ("CC-Loss, the class-pair form (default)", "loss=cc,cam=true,seed="),
)
SMALL_COLUMNS = tuple((key, *MEASURES[key]) for key in MEASURES if key not in ("test_knn_acc", "test_probe_acc"))


def small_table() -> list[str]:
    """CE+CAM, the ratio and the class-pair form in ``results/small_cam``: mean ± std over its seeds."""
    head = ["", "n", *(name for _, name, _ in SMALL_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row, prefix in SMALL_ROWS:
        finals = []
        for path in sorted((RESULTS / SMALL_SWEEP).glob(f"{prefix}[0-9]*/metrics.json")):
            metrics = json.loads(path.read_text())
            if metrics.get("status") == "complete":
                finals.append(metrics["final"])
        cells = [row, str(len(finals))]
        for key, _, digits in SMALL_COLUMNS:
            cells.append(mean_std([f[key] for f in finals if f.get(key) is not None], digits))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def notebook_times() -> list[str]:
    """Each numbered notebook's run time from its papermill metadata, as the README prints it."""
    lines = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        duration = json.loads(path.read_text()).get("metadata", {}).get("papermill", {}).get("duration")
        lines.append(f"{path.stem}: {format_seconds(duration)}")
    return lines


def format_seconds(seconds: float | None) -> str:
    """``47 s`` or ``2 min 41 s``, rounded to the second; ``not measured`` without a value."""
    if seconds is None:
        return "not measured"
    total = round(seconds)
    return f"{total} s" if total < 60 else f"{total // 60} min {total % 60} s"


def main() -> int:
    print(f"## mnist5k test, results/{SMALL_SWEEP} (3 epochs)\n")
    print("\n".join(small_table()), end="\n\n")
    for dataset in DATASETS:
        print(f"## {dataset} test, 40 epochs, trained on the whole train split\n")
        print("\n".join(table(dataset)), end="\n\n")
    print("## notebook run times (papermill metadata of the committed notebooks)\n")
    print("\n".join(notebook_times()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
