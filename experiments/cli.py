"""Command line of the experiments: ``python -m experiments sweep|report|study|compare ...``.

``sweep`` runs a sweep file (``--jobs N`` points at once on this machine, ``--point N`` one point: a
task of a SLURM job array, ``--slurm`` the whole array submitted with submitit); ``report`` aggregates
a sweep folder beside the paper; ``study`` applies the default study's selection rule; ``compare``
trains CE+CAM and CC-Loss over seeds (its training flags are ccloss's own: ``python -m ccloss train``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "build_parser"]


def _add_sweep(sub) -> None:
    sweep = sub.add_parser(
        "sweep", help="run a sweep file (a grid of notebook runs), resumable",
        description="Run every point of a sweep file with papermill into OUT/<name>/<point>/. Rerunning skips "
        "finished points and resumes the others.", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    sweep.add_argument("file", help="sweep YAML file, e.g. sweeps/small_lambda.yaml")
    sweep.add_argument(
        "--jobs", "-j", type=int, default=1, help="points at once (one process each; one GPU each when several)"
    )
    sweep.add_argument("--out", default="runs", help="folder that receives <name>/")
    sweep.add_argument("--name", default=None, help="output folder name instead of the file's `name`")
    sweep.add_argument(
        "-p", "--parameter", dest="parameters", nargs=2, action="append", metavar=("NAME", "VALUE"),
        help="override a parameter (YAML value: 0.5, true, [0,1,2]); repeatable",
    )  # fmt: skip
    sweep.add_argument(
        "--point", type=int, default=None, metavar="N",
        help="run only the N-th point (0-based, the order of --dry-run): one task of a SLURM job array, "
        "e.g. --point $SLURM_ARRAY_TASK_ID (docs/more_gpus.md)",
    )  # fmt: skip
    sweep.add_argument("--dry-run", action="store_true", help="check every point's values, list their status, run none")
    sweep.add_argument("--report", action="store_true", help="write and print the report when every point succeeded")
    sweep.add_argument(
        "--slurm", action="store_true",
        help="submit the sweep as a job array (one point per task) with submitit: SLURM where sbatch exists, "
        "else submitit's local executor; requeued on preemption, each point resumes",
    )  # fmt: skip
    sweep.add_argument(
        "--slurm-option", dest="slurm_options", nargs=2, action="append", metavar=("NAME", "VALUE"),
        help="a submitit parameter, e.g. slurm_partition gpu, timeout_min 600, gpus_per_node 1; repeatable",
    )  # fmt: skip


def _folders_command(sub, name: str, summary: str, description: str, example: str):
    """A subcommand that reads sweep folders (positional ``folders``)."""
    command = sub.add_parser(name, help=summary, description=description)
    command.add_argument("folders", nargs="+", help=f"sweep folders, e.g. {example}")
    return command


def _add_report_and_study(sub) -> None:
    report = _folders_command(
        sub, "report", "mean +/- std over seeds of a sweep folder, beside the paper",
        "Aggregate a sweep folder over seeds (mean +/- std, n), join the paper's table, and write report.csv and "
        "report.md into the folder.", "runs/small_lambda",
    )  # fmt: skip
    report.add_argument(
        "--export", default=None, metavar="DIR",
        help="also copy the small result files (no checkpoints, no notebooks) to DIR/<name>/",
    )  # fmt: skip
    study = _folders_command(
        sub, "study", "the CC-Loss default study: mean +/- std per candidate and the selection",
        "Read the study's sweep folders (points with a label) and apply the pre-registered selection rule of "
        "docs/study_cc_default.md.", "runs/study_screen runs/study_finalists",
    )  # fmt: skip
    study.add_argument(
        "--only", nargs="+", metavar="LABEL", default=None,
        help="rank only these candidates (beside CE+CAM), e.g. --only se_wide+lam0.03 se_wide+lam0.1",
    )  # fmt: skip
    study.add_argument(
        "--part5", action="store_true",
        help="Part 5's tables and rule: class structure measured independently of the loss (attention 10-NN, "
        "probe, merged class pairs)",
    )  # fmt: skip


def _add_compare(sub, with_train_flags: bool) -> None:
    compare = sub.add_parser(
        "compare", help="CE+CAM against CC-Loss over seeds, as a table",
        description="Train (or load) each loss for each seed and print mean +/- std. Every other flag is a "
        "ccloss.TrainConfig field with TrainConfig's default (python -m ccloss train --help).",
    )  # fmt: skip
    if with_train_flags:  # ccloss's own flags (imports torch): only when the command is compare
        from ccloss.cli import add_train_arguments

        add_train_arguments(compare, skip=("loss", "seed", "out", "resume", "overwrite"))
    compare.add_argument("--losses", nargs="+", default=["ce", "cc"], help="losses to compare (default: ce cc)")
    compare.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    compare.add_argument("--out", default="runs/compare", help="folder of the run directories (default: runs/compare)")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments", description="Sweeps, reports, the study and comparisons around ccloss."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_sweep(sub)
    _add_report_and_study(sub)
    _add_compare(sub, with_train_flags="compare" in argv)
    return parser


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _sweep_command(args: argparse.Namespace) -> int:
    from .sweep import NAME_UNSAFE, load_sweep, run_sweep  # no torch: a sweep process only starts points

    sweep = load_sweep(args.file, {name: _parse_value(value) for name, value in (args.parameters or [])})
    if args.name:
        if NAME_UNSAFE.search(args.name):
            raise ValueError(f"--name {args.name!r} must be a plain folder name")
        sweep.name = args.name
    if args.slurm:
        from .slurm import submit_array

        options = {name: _parse_value(value) for name, value in (args.slurm_options or [])}
        jobs = submit_array(sweep, args.out, options=options, log=lambda message: print(message, flush=True))
        print(f"submitted {len(jobs)} task(s): {jobs[0].job_id.split('_')[0] if jobs else '-'}", flush=True)
        return 0
    log = lambda message: print(message, flush=True)  # noqa: E731
    result = run_sweep(sweep, args.out, jobs=args.jobs, dry_run=args.dry_run, log=log, point_index=args.point)
    if args.dry_run:
        return 0
    print(result.summary(), flush=True)
    if result.interrupted:
        return 143  # stopped by SIGTERM/SIGINT: every point stopped after its epoch, with a checkpoint
    if result.ok and args.report:
        from .report import write_report

        print(write_report(result.sweep_dir)["markdown"])
    return 0 if result.ok else 1


def _report_command(args: argparse.Namespace) -> int:
    from .report import export_results, write_report

    status = 0
    for folder in args.folders:
        try:
            written = write_report(folder)
        except (ValueError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            status = 2
            continue
        print(written["markdown"])
        print(f"\nwritten: {written['csv']} and {written['md']}")
        if args.export:
            print(f"exported the small result files to {export_results(folder, args.export)}")
    return status


def _study_command(args: argparse.Namespace) -> int:
    from . import study

    try:
        runs = study.load_study(args.folders)
    except FileNotFoundError as error:
        raise ValueError(str(error)) from None
    if args.only:
        runs = study.only_labels(runs, args.only)
    if args.part5:
        from . import study_separation

        print(study_separation.markdown(runs))
        return 0
    print(study.study_markdown(runs))
    return 0


def _compare_command(args: argparse.Namespace) -> int:
    from ccloss.cli import config_from_args

    from .comparison import comparison_table, run_comparison
    from .tables import markdown_table

    base = config_from_args(args, loss="cc", seed=0, out=args.out)
    print(markdown_table(comparison_table(run_comparison(base, args.losses, args.seeds, args.out))))
    return 0


_COMMANDS = {"sweep": _sweep_command, "report": _report_command, "study": _study_command, "compare": _compare_command}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m experiments ...``: 0 done, 2 bad input, 130 interrupted."""
    from ccloss.runtime import exit_code_of

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv[:1]).parse_args(argv)
    command = _COMMANDS[args.command]
    return exit_code_of(lambda: command(args), [(ValueError, 2, "error")], "rerun the same command to resume")
