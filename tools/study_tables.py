"""Write the study's tables and figures into docs/study_cc_default.md from the committed runs in results/.

Each generated block of the page sits between ``<!-- study_tables:NAME -->`` and
``<!-- /study_tables:NAME -->``; this tool replaces what is between them with what
:mod:`experiments.study` (Parts 1-4) and :mod:`experiments.study_separation` (Part 5) print for the
folders of :data:`SECTIONS`, and redraws the figures of :data:`FIGURES` into docs/figures/ with
:mod:`experiments.report_plots`. The prose around the blocks is written by hand.

    python -m tools.study_tables            # rewrite the blocks and the figures
    python -m tools.study_tables --check    # exit 1 when a block differs from the results (no writing)
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "study_cc_default.md"
RESULTS = ROOT / "results"
FIGURE_DIR = ROOT / "docs" / "figures"


def _runs(*folders: str):
    from experiments.study import load_study

    return load_study([RESULTS / folder for folder in folders])


def _study(*folders: str) -> str:
    """Parts 1-4: mean ± std per candidate and dataset, then the rule (val) or the checks (test)."""
    from experiments.study import study_markdown

    return study_markdown(_runs(*folders))


def _part4_val() -> str:
    """Part 4's rule on val, ranking its two candidates only (with CE+CAM's val runs as the reference)."""
    from experiments.study import only_labels, study_markdown

    runs = _runs("study_screen", "study_finalists", "study_combined")
    return study_markdown(only_labels(runs, ["se_wide+lam0.03", "se_wide+lam0.1"]))


def _part5(*folders: str, decide: bool = True) -> str:
    """Part 5: accuracy with the class measures as recorded, then (``decide``) the rule (val) or the decision
    (test)."""
    from experiments.study_separation import markdown

    return markdown(_runs(*folders), decide=decide)


def _budget() -> str:
    """The budget pilot's rule, per dataset."""
    from experiments.study import budget_rule, pilot_curves
    from experiments.tables import markdown_table

    rule = budget_rule(pilot_curves(RESULTS / "study_budget"))
    import pandas as pd

    table = pd.DataFrame(rule["checks"]).T.rename_axis("dataset").reset_index()
    table = table.assign(**{c: table[c].map(lambda v: f"{v:.2f}") for c in table.columns if c not in ("dataset", "ok")})
    return markdown_table(table) + f"\n\nBy the rule: **{rule['epochs']} epochs**."


#: Block name -> what writes it (the folders it reads are named in each call).
SECTIONS: dict[str, Callable[[], str]] = {
    "budget": _budget,
    "stage1": lambda: _study("study_screen"),
    "stage2": lambda: _study("study_screen", "study_finalists"),
    "stage3": lambda: _study("study_test"),
    "part3": lambda: _study("study_followup", "study_test"),
    "part4-val": _part4_val,
    "part4-test": lambda: _study("study_combined_test", "study_followup", "study_test"),
    "part5-short": lambda: _part5("study_part5_short"),
    "part5-screen": lambda: _part5("study_part5_screen"),
    "part5-finalists": lambda: _part5("study_part5_screen", "study_part5_finalists"),
    "part5-test": lambda: _part5("study_part5_test"),
    "part5-test-measures": lambda: _part5("study_part5_test_measures", decide=False),
}


def _budget_figure(path: Path) -> None:
    from experiments.report_plots import plot_budget_curves
    from experiments.study import pilot_curves

    fig = plot_budget_curves(pilot_curves(RESULTS / "study_budget"))
    for ax in fig.axes:  # accuracy cannot exceed 100 %: the axis stops there
        ax.set_ylim(top=min(100.0, ax.get_ylim()[1]))
    fig.suptitle("Budget pilot: CE+CAM's val accuracy per epoch (axes start 3 points below the best mean)", y=1.02)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def _screen_figure(path: Path) -> None:
    """Stage 1 without ``difference``, whose accuracy (75-90 %) would squash the axis; the page says so."""
    from experiments.report_plots import plot_study
    from experiments.study import select

    runs = _runs("study_screen")
    runs = runs[runs["label"] != "difference"]
    fig = plot_study(runs, order=["ce_cam", *select(runs).set_index("label").index])
    fig.axes[0].set_title("Stage 1 (3 seeds, val): accuracy; red: collapsed runs ('difference' left out)")
    fig.axes[1].set_title("The loss's own statistic, lower = tighter classes")
    fig.axes[1].set_xlabel("candidate (docs/study_cc_default.md, Part 1's table)")
    fig.set_size_inches(fig.get_size_inches()[0], 7.6)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")


#: Figure file in docs/figures/ -> what draws it.
FIGURES: dict[str, Callable[[Path], None]] = {"study_budget.png": _budget_figure, "study_screen.png": _screen_figure}


def _block(name: str) -> re.Pattern:
    return re.compile(
        rf"(<!-- study_tables:{re.escape(name)} -->\n)(.*?)(<!-- /study_tables:{re.escape(name)} -->)", re.S
    )


def render(text: str) -> str:
    """``text`` (the page) with every block rewritten; a ValueError names a block whose markers are missing."""
    for name, write in SECTIONS.items():
        pattern = _block(name)
        if not pattern.search(text):
            raise ValueError(f"{PAGE.name} lacks the markers of block {name!r}: add '<!-- study_tables:{name} -->'"
                             f" and '<!-- /study_tables:{name} -->' where its table belongs")  # fmt: skip
        body = write().strip() + "\n"
        text = pattern.sub(lambda m, body=body: m.group(1) + "\n" + body + "\n" + m.group(3), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.study_tables", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the page differs; write nothing")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import matplotlib

    matplotlib.use("Agg")
    old = PAGE.read_text()
    new = render(old)
    if args.check:
        if new != old:
            print(f"{PAGE.relative_to(ROOT)} differs from results/: run python -m tools.study_tables")
            return 1
        print(f"{PAGE.relative_to(ROOT)} matches results/")
        return 0
    PAGE.write_text(new)
    FIGURE_DIR.mkdir(parents=True, exist_ok=True)
    for name, draw in FIGURES.items():
        draw(FIGURE_DIR / name)
        print(FIGURE_DIR.relative_to(ROOT) / name)
    print(f"{PAGE.relative_to(ROOT)}: {len(SECTIONS)} blocks written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
