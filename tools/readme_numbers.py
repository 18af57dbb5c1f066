"""Print the README's numbers from the committed files, so that they can be refreshed after a rerun.

``python -m tools.readme_numbers`` from the repository root prints (1) the take-home of the runs of this
repository, CE+CAM against the paper's ratio and the class-pair form on the test split (mean ± sample std
over seeds, ddof = 1, as the sweep reports), read from ``results/``: the CPU sweep the notebooks read
(``small_cam``, 3 epochs) and the study's 40-epoch stage C rerun with every measure
(``study_part5_test_measures``), and (2) each notebook's
measured run time from its papermill metadata (the ``make run`` that executed the committed notebooks).
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from experiments.formatting import format_mean_std

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
#: metrics.json ``final`` keys -> (column, decimals); a key that no run has prints as "not measured".
MEASURES = {
    "test_acc": ("test acc (%)", 2),
    "test_intra_inter": ("intra/inter", 3),
    "test_precision_at_1": ("P@1 (%)", 1),
    "test_map_at_r": ("MAP@R (%)", 1),
    "test_unseparated_pairs": ("unseparated pairs (of 45)", 1),
}
#: The CPU sweep the notebooks read: row -> its points' name prefix (``loss=cc,cam=true,seed=`` is the
#: class-pair form; the ratio's points carry ``form=ratio``).
SMALL_SWEEP = "small_cam"
SMALL_ROWS = (
    ("CE+CAM", "loss=ce,cam=true,seed="),
    ("CC-Loss, the paper's ratio", "loss=cc,cam=true,form=ratio,seed="),
    ("CC-Loss, the class-pair form (default)", "loss=cc,cam=true,seed="),
)
#: Stage C of the study's Part 5 rerun with every measure (40 epochs): row -> the point's label.
STAGE_C = "study_part5_test_measures"
STAGE_C_ROWS = (
    ("CE+CAM", "ce_cam"),
    ("CC-Loss, the paper's ratio", "default"),
    ("CC-Loss, the class-pair form (default)", "pair_ratio"),
)
DATASETS = ("mnist5k", "digits")


def complete_finals(folder: Path, pattern: str) -> list[dict]:
    """The ``final`` metrics of the complete runs ``folder/<pattern>/metrics.json``, in name order."""
    finals = []
    for path in sorted(folder.glob(f"{pattern}/metrics.json")):
        metrics = json.loads(path.read_text())
        if metrics.get("status") == "complete":
            finals.append(metrics["final"])
    return finals


def mean_std(values: list[float], digits: int) -> str:
    """``mean ± std`` (sample std, :func:`experiments.formatting.format_mean_std`); a single value has no
    spread and prints alone."""
    if not values:
        return "not measured"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (n = 1)"
    return format_mean_std(statistics.mean(values), statistics.stdev(values), digits)


def markdown_rows(rows: list[tuple[str, list[dict]]]) -> list[str]:
    """A markdown table: one row per (name, runs' final metrics), n and mean ± std of each measure."""
    head = ["", "n", *(name for name, _ in MEASURES.values())]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row, finals in rows:
        cells = [row, str(len(finals))]
        for key, (_, digits) in MEASURES.items():
            values = [f[key] for f in finals if f.get(key) is not None]
            fewer = f" (n = {len(values)})" if 1 < len(values) < len(finals) else ""
            cells.append(mean_std(values, digits) + fewer)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def small_table() -> list[str]:
    """CE+CAM, the ratio and the class-pair form in ``results/small_cam`` (3 epochs): mean ± std over seeds."""
    folder = RESULTS / SMALL_SWEEP
    return markdown_rows([(row, complete_finals(folder, f"{prefix}[0-9]*")) for row, prefix in SMALL_ROWS])


def table(dataset: str) -> list[str]:
    """The same three rows after 40 epochs on ``dataset`` (stage C rerun): mean ± std over seeds."""
    folder = RESULTS / STAGE_C
    pattern = "label={},dataset=" + dataset + ",seed=*"
    return markdown_rows([(row, complete_finals(folder, pattern.format(label))) for row, label in STAGE_C_ROWS])


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
        print(f"## {dataset} test, results/{STAGE_C} (40 epochs, the whole train split)\n")
        print("\n".join(table(dataset)), end="\n\n")
    print("## notebook run times (papermill metadata of the committed notebooks)\n")
    print("\n".join(notebook_times()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
