"""The study's stage files (docs/study_cc_default.md): each stage's sweep file written from the earlier
stages' by the pre-registered rule, so no candidate is typed in by hand.

    python -m tools.study_stages finalists runs/study_screen --screen sweeps/study_screen.yaml --out F.yaml
    python -m tools.study_stages test runs/study_screen runs/study_finalists --stages S.yaml F.yaml --out T.yaml
    python -m tools.study_stages part5-finalists runs/study_part5_screen --stages sweeps/study_part5_screen.yaml \\
        --out sweeps/study_part5_finalists.yaml
    python -m tools.study_stages part5-test runs/study_part5_screen runs/study_part5_finalists \\
        --stages sweeps/study_part5_screen.yaml --out sweeps/study_part5_test.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from experiments import study
from experiments import study_separation as part5
from experiments.study import REFERENCE

__all__ = ["finalists_sweep", "stage_three_sweep", "part5_sweep", "write_stage_file", "main"]


def finalists_sweep(screen_file: str | os.PathLike, chosen: dict, seeds=(3, 4), all_seeds=(0, 1, 2, 3, 4)) -> dict:
    """Stage 2's sweep file (as a mapping) from stage 1's: the finalists and the reference with
    ``seeds``, the combination (a mechanism at the best lambda) with ``all_seeds``."""
    screen = yaml.safe_load(Path(screen_file).read_text())
    by_label = {point["label"]: point for point in screen["points"]}
    points = [dict(by_label[label], seeds=list(seeds)) for label in [REFERENCE, *chosen["finalists"]]]
    if chosen.get("combination"):
        mechanism, lam_label = chosen["combination"]
        label = f"{mechanism}+{lam_label}"
        if label not in {p["label"] for p in points}:
            points.append(dict(by_label[mechanism], label=label, lam=by_label[lam_label]["lam"], seeds=list(all_seeds)))
    return {
        "name": "study_finalists",
        "description": "Stage 2 of the CC-Loss default study: the finalists of stage 1 and CE+CAM get two more seeds, "
        "the combination of the best mechanism with the best lambda all five (docs/study_cc_default.md).",
        "notebook": screen["notebook"], "fixed": screen["fixed"], "grid": screen["grid"], "points": points,
    }  # fmt: skip


def stage_three_sweep(stage_files: Sequence[str | os.PathLike], winner: str, seeds=(0, 1, 2, 3, 4)) -> dict:
    """Stage 3's sweep file (as a mapping): CE+CAM, ``old_default`` and ``winner`` as defined in the
    earlier stages' sweep files, trained on the whole ``train`` split and evaluated on ``test``."""
    stages = [yaml.safe_load(Path(f).read_text()) for f in stage_files]
    by_label = {point["label"]: point for stage in stages for point in stage["points"]}
    missing = [label for label in (REFERENCE, "old_default", winner) if label not in by_label]
    if missing:
        raise ValueError(f"no point labelled {missing} in {[str(f) for f in stage_files]}")
    points = [dict(by_label[label], seeds=list(seeds)) for label in dict.fromkeys([REFERENCE, "old_default", winner])]
    return {
        "name": "study_test",
        "description": "Stage 3 of the CC-Loss default study: CE+CAM, the old default and the winner, trained on "
        "the whole train split and evaluated on test, 5 seeds (docs/study_cc_default.md). Reported, never used to "
        "choose.",
        "notebook": stages[0]["notebook"], "fixed": {**stages[0]["fixed"], "eval_split": "test"},
        "grid": stages[0]["grid"], "points": points,
    }  # fmt: skip


def _points_by_label(stage_files: Sequence[str | os.PathLike]) -> tuple[list[dict], dict]:
    stages = [yaml.safe_load(Path(f).read_text()) for f in stage_files]
    return stages, {point["label"]: point for stage in stages for point in stage["points"]}


def part5_sweep(stage_files: Sequence[str | os.PathLike], labels: Sequence[str], stage: str) -> dict:
    """Part 5's stage B (``stage="finalists"``: ``labels`` and CE+CAM, seeds 3-4, val) or stage C
    (``"test"``: seeds 0-4, trained on the whole train split, evaluated on test), each point as in
    the earlier stages' files."""
    stages, by_label = _points_by_label(stage_files)
    labels = list(dict.fromkeys([REFERENCE, *labels]))
    missing = [label for label in labels if label not in by_label]
    if missing:
        raise ValueError(f"no point labelled {missing} in {[str(f) for f in stage_files]}")
    seeds = [3, 4] if stage == "finalists" else [0, 1, 2, 3, 4]
    fixed = {**stages[0]["fixed"], "eval_split": "val" if stage == "finalists" else "test"}
    what = "two more seeds on val" if stage == "finalists" else "trained on the whole train split, evaluated on test"
    return {
        "name": f"study_part5_{stage}",
        "description": f"Part 5 of the CC-Loss default study, stage {'B' if stage == 'finalists' else 'C'}: "
        f"{', '.join(labels)}, {what}, seeds {seeds} (docs/study_cc_default.md, Part 5).",
        "notebook": stages[0]["notebook"], "fixed": fixed, "grid": stages[0]["grid"],
        "points": [dict(by_label[label], seeds=seeds) for label in labels],
    }  # fmt: skip


def write_stage_file(sweep: dict, out_file: str | os.PathLike, command: str) -> Path:
    """A stage's sweep file, as YAML with a header saying how it was written."""
    sweep = json.loads(json.dumps(sweep))  # plain copies: no YAML anchors for dicts the points share
    text = f"# Written by `python -m tools.study_stages {command}` (docs/study_cc_default.md).\n"
    Path(out_file).write_text(text + yaml.safe_dump(sweep, sort_keys=False, width=110))
    return Path(out_file)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.study_stages", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["finalists", "test", "part5-finalists", "part5-test"])
    parser.add_argument("folders", nargs="+", help="the finished stages' sweep folders")
    parser.add_argument("--stages", nargs="+", required=True, help="the earlier stages' sweep files (screen first)")
    parser.add_argument("--out", required=True, help="the sweep file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    runs = study.load_study(args.folders)
    if args.stage == "finalists":
        chosen = study.finalists(study.select(runs))
        sweep, picked = finalists_sweep(args.stages[0], chosen), chosen
    elif args.stage == "test":
        winners = study.select(runs).query("rank == 1")["label"]
        if winners.empty:
            raise SystemExit("no eligible finalist: the study has no winner to test")
        sweep, picked = stage_three_sweep(args.stages, winners.iloc[0]), winners.iloc[0]
    elif args.stage == "part5-finalists":
        picked = part5.finalists(part5.verdicts(runs))
        sweep = part5_sweep(args.stages, picked, "finalists")
    else:
        table = part5.select(runs)
        winners = list(table.loc[table["rank"] == 1, "label"])
        best = part5.honest_best(table)
        picked = winners or ([best] if best else [])  # no winner: the honest best goes to test, named as such
        sweep = part5_sweep(args.stages, [*picked, part5.CURRENT_DEFAULT], "test")
    path = write_stage_file(sweep, args.out, " ".join([args.stage, "..."]))
    print(f"{args.stage}: {picked} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
