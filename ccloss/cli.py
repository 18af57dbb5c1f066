"""Command line: ``python -m ccloss train|compare|sweep|report|study``.

Every ``train`` flag is a :class:`ccloss.config.TrainConfig` field (``--width-mult`` sets
``width_mult``); ``--help`` shows each with its default. Unknown names exit with code 2 and
list the valid ones. All string parsing of the package happens here (``--loss-param NAME=VALUE``,
``-p NAME VALUE``); the library itself takes typed values.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from . import data as datasets
from .attention import ACTIVATIONS
from .cc_loss import FORMS
from .config import CC_SCOPES, EVAL_SPLITS, PRESETS, TrainConfig
from .losses import LOSSES
from .models import BACKBONES, STEMS
from .runtime.atomic import DiskFullError
from .runtime.checkpoint import RunExistsError
from .runtime.devices import DEVICES
from .runtime.preemption import EXIT_CODE, Preempted
from .train import NonFiniteLossError

__all__ = ["main", "build_parser", "config_from_args", "parse_loss_params", "describe_losses"]

_HELP = {
    "dataset": "dataset name",
    "data_dir": "folder holding the datasets (see data/README.md)",
    "backbone": "backbone network",
    "cam_activation": "the SE block's hidden activation (leaky_relu cannot die)",
    "cam_min_hidden": "a floor on the SE block's hidden width: max(floor, C // 16) units (1: none, SE as published)",
    "eval_split": "evaluate on test, or on val (then train on train without val: for choosing settings)",
    "width_mult": "channel width multiplier (1.0 = standard; 0.25 for CPU demos)",
    "stem": "first layers: cifar (3x3, no max-pool) or imagenet; default: the dataset's suggestion",
    "pretrained": "initial weights: 'imagenet' (torchvision, needs internet) or a state-dict path",
    "loss": "training objective",
    "lam": "weight of the loss's extra term (CC-Loss: lambda); default: the loss's own",
    "form": "CC-Loss form: ratio, sums, difference or log_ratio (default ratio)",
    "group_size": "take the CC statistic over groups of this many samples (default: the whole batch)",
    "batch_size": "mini-batch size per process",
    "epochs": "training epochs",
    "lr": "SGD learning rate",
    "momentum": "SGD momentum",
    "weight_decay": "SGD weight decay",
    "lr_milestones": "fractions of the epochs where the lr is multiplied by --lr-gamma",
    "lr_gamma": "lr decay factor",
    "seed": "random seed (CPU runs are bit-for-bit repeatable)",
    "device": "auto (CUDA when available), cpu or cuda",
    "amp": "bf16 autocast (CUDA only)",
    "channels_last": "channels_last memory format",
    "compile": "torch.compile the model",
    "cc_scope": "under torchrun: CC-Loss over the global batch (gathered) or per process",
    "sync_bn": "under torchrun: synchronised BatchNorm",
    "download": "try torchvision's download where one exists",
    "out": "run directory",
    "resume": "continue an interrupted run (a finished one is just loaded)",
    "overwrite": "start again even if --out holds a run",
    "quiet": "no progress bar or per-epoch lines",
}
_CHOICES = {
    "dataset": tuple(datasets.DATASETS),
    "backbone": BACKBONES,
    "loss": tuple(LOSSES),
    "device": DEVICES,
    "stem": STEMS,
    "cc_scope": CC_SCOPES,
    "form": FORMS,
    "eval_split": EVAL_SPLITS,
    "cam_activation": ACTIVATIONS,
}


_TRUE, _FALSE, _NONE = {"true", "1", "yes", "y", "on"}, {"false", "0", "no", "n", "off"}, {"none", "null", ""}


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _typed(text: str, target: type, nullable: bool) -> Any:
    """``text`` as ``target`` (bool, int, float or str); raises ValueError when it is not one."""
    lowered = text.lower()
    if nullable and lowered in _NONE:
        return None
    if target is bool:
        if lowered not in _TRUE | _FALSE:
            raise ValueError("not true or false")
        return lowered in _TRUE
    if target is int:
        number = float(text)
        if not number.is_integer():
            raise ValueError("not an integer")
        return int(number)
    if target is float:
        return float(text)
    return text


def parse_loss_params(pairs: Sequence[tuple[str, str]], losses: Sequence[str]) -> dict[str, Any]:
    """``--loss-param NAME=VALUE`` strings typed by the default of the first loss in ``losses`` that
    has NAME ("1e-4" -> 0.0001, "false" -> False, "none" -> None). Names no loss has stay strings:
    ``build_criterion`` then lists the valid ones."""
    params: dict[str, Any] = {}
    for name, text in pairs:
        owner = next((LOSSES[loss] for loss in losses if loss in LOSSES and name in LOSSES[loss].defaults), None)
        if owner is None:
            params[name] = text
            continue
        default = owner.defaults[name]
        target = type(default) if default is not None else owner.hparam_types.get(name, str)
        try:
            params[name] = _typed(text, target, default is None)
        except ValueError as error:
            kind = target.__name__ + (" or None" if default is None else "")
            raise ValueError(f"--loss-param {name}={text}: loss {owner.name!r} needs a {kind} ({error})") from None
    return params


def describe_losses() -> str:
    """A short text table of the losses (name, paper name, hyperparameters with defaults)."""
    rows = [("name", "paper", "hyperparameters (defaults)", "objective")]
    for name, cls in LOSSES.items():
        rows.append((name, cls.paper_name, cls.describe_hparams(), cls.summary))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3] for row in rows)


#: The type of each TrainConfig field whose flag takes a value (the rest are strings).
_TYPES = {
    "width_mult": float, "lam": float, "lr": float, "momentum": float, "weight_decay": float, "lr_gamma": float,
    "batch_size": int, "epochs": int, "seed": int, "group_size": int, "cam_min_hidden": int,
}  # fmt: skip


def _flag_for(name: str, default: Any) -> tuple[str, dict]:
    """The flag and ``add_argument`` keywords of one TrainConfig field."""
    flag, help_text = "--" + name.replace("_", "-"), _HELP.get(name, name)
    if name == "cam":
        return "--no-cam", {"action": "store_false", "help": "drop the channel attention module (default: with CAM)"}
    if name == "loss_params":
        return "--loss-param", {"action": "append", "type": _key_value, "default": [], "metavar": "NAME=VALUE",
                                "help": "a hyperparameter of the loss (repeatable); see the list below"}  # fmt: skip
    if isinstance(default, bool):
        if default:
            return "--no-" + name.replace("_", "-"), {
                "action": "store_false",
                "help": f"turn off: {help_text} (default: on)",
            }
        return flag, {"action": "store_true", "help": f"{help_text} (default: off)"}
    if name == "lr_milestones":
        return flag, {"type": float, "nargs": "+", "default": list(default),
                      "help": f"{help_text} (default: {' '.join(map(str, default))})"}  # fmt: skip
    return flag, {"type": _TYPES.get(name, str), "default": default, "choices": _CHOICES.get(name),
                  "help": f"{help_text} (default: {default})"}  # fmt: skip


def add_train_arguments(
    parser: argparse.ArgumentParser, skip: Sequence[str] = (), defaults: dict[str, Any] | None = None
) -> None:
    """One flag per TrainConfig field, named after it, with its default (TrainConfig's, or
    ``defaults``) in the help."""
    defaults = dataclasses.replace(TrainConfig(), **(defaults or {}))
    for f in dataclasses.fields(TrainConfig):
        if f.name not in skip:
            flag, keywords = _flag_for(f.name, getattr(defaults, f.name))
            parser.add_argument(flag, dest=f.name, **keywords)


def config_from_args(args: argparse.Namespace, **overrides: Any) -> TrainConfig:
    """The TrainConfig of parsed flags; with ``--preset``, the preset's values wherever a flag was
    left at its default (flags that differ from their defaults override the preset)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    losses = getattr(args, "losses", None) or [overrides.get("loss", values.get("loss"))]
    values["loss_params"] = parse_loss_params(values.get("loss_params") or [], losses)
    values["lr_milestones"] = tuple(values.get("lr_milestones", TrainConfig().lr_milestones))
    preset = getattr(args, "preset", None)
    if preset:
        defaults = TrainConfig()
        given = {k: v for k, v in values.items() if v != getattr(defaults, k)}
        return TrainConfig.from_preset(preset, **{**given, **overrides})
    values.update(overrides)
    return TrainConfig(**values)


def _add_preset_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", choices=tuple(PRESETS), default=None,
        help="named settings; cc_v1 = CC-Loss as first reconstructed (lam 1, SE as published), the default "
        "before docs/study_cc_default.md, kept to reproduce its collapse; cc_v2 = lam 0.03, SE as published; "
        "cc_pair = the class-pair-balanced ratio (Part 5's winner on val). Flags that differ from their defaults "
        "override it.",
    )  # fmt: skip


def _add_train_commands(sub) -> None:
    train_parser = sub.add_parser(
        "train",
        help="train one model into a run directory",
        description="Train one model into a run directory.",
        epilog="Losses and their hyperparameters (--loss-param NAME=VALUE):\n" + describe_losses(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_arguments(train_parser)
    _add_preset_argument(train_parser)
    compare = sub.add_parser(
        "compare",
        help="CE+CAM against CC-Loss over seeds, as a table",
        description="Train (or load) each loss for each seed and print mean +/- std.",
    )
    # real MNIST digits by default (embedded); --dataset digits is the under-a-minute option
    add_train_arguments(compare, skip=("loss", "seed", "out", "resume", "overwrite"), defaults={"dataset": "mnist5k"})
    compare.add_argument(
        "--losses", nargs="+", default=["ce", "cc"], choices=tuple(LOSSES), help="losses to compare (default: ce cc)"
    )
    compare.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    compare.add_argument("--out", default="runs/compare", help="folder of the run directories (default: runs/compare)")


def _add_sweep_commands(sub) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="run a sweep file (a grid of notebook runs), resumable",
        description="Run every point of a sweep file with papermill into OUT/<name>/<point>/. Rerunning skips "
        "finished points and resumes the others.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sweep.add_argument("file", help="sweep YAML file, e.g. sweeps/small_lambda.yaml")
    sweep.add_argument(
        "--jobs", "-j", type=int, default=1, help="points at once (one process each; one GPU each when several)"
    )
    sweep.add_argument("--out", default="runs", help="folder that receives <name>/")
    sweep.add_argument("--name", default=None, help="output folder name instead of the file's `name`")
    sweep.add_argument(
        "-p",
        "--parameter",
        dest="parameters",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="override a parameter (YAML value: 0.5, true, [0,1,2]); repeatable",
    )
    sweep.add_argument(
        "--point", type=int, default=None, metavar="N",
        help="run only the N-th point (0-based, the order of --dry-run): one task of a SLURM job array, "
             "e.g. --point $SLURM_ARRAY_TASK_ID (docs/more_gpus.md)",
    )  # fmt: skip
    sweep.add_argument("--dry-run", action="store_true", help="list the points and their status, run nothing")
    sweep.add_argument("--report", action="store_true", help="write and print the report when every point succeeded")
    report = sub.add_parser(
        "report",
        help="mean +/- std over seeds of a sweep folder, beside the paper",
        description="Aggregate a sweep folder over seeds (mean +/- std, n), join the paper's table, and write "
        "report.csv and report.md into the folder.",
    )
    report.add_argument("folders", nargs="+", help="sweep folders, e.g. runs/small_lambda")
    report.add_argument(
        "--export",
        default=None,
        metavar="DIR",
        help="also copy the small result files (no checkpoints, no notebooks) to DIR/<name>/",
    )
    study = sub.add_parser(
        "study",
        help="the CC-Loss default study: mean +/- std per candidate and the selection",
        description="Read the study's sweep folders (points with a label) and apply the "
        "pre-registered selection rule of docs/study_cc_default.md.",
    )
    study.add_argument("folders", nargs="+", help="sweep folders, e.g. runs/study_screen runs/study_finalists")
    study.add_argument(
        "--only", nargs="+", metavar="LABEL", default=None,
        help="rank only these candidates (beside CE+CAM), e.g. --only se_wide+lam0.03 se_wide+lam0.1",
    )  # fmt: skip
    study.add_argument(
        "--part5", action="store_true",
        help="Part 5's tables and rule: class structure measured independently of the loss (attention 10-NN, "
             "probe, merged class pairs)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ccloss", description="CC-Loss: train, compare, sweep, report and study."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_commands(sub)
    _add_sweep_commands(sub)
    return parser


def _train_command(args: argparse.Namespace) -> int:
    from .train import fit

    final = fit(config_from_args(args)).get("final") or {}
    split = args.eval_split
    print(
        f"done: {split}_acc {final.get(f'{split}_acc', float('nan')):.2f}%  "
        f"best {final.get(f'best_{split}_acc', float('nan')):.2f}%  run directory {args.out}"
    )
    return 0


def _compare_command(args: argparse.Namespace) -> int:
    from .experiments.comparison import comparison_table, run_comparison
    from .experiments.tables import markdown_table

    base = config_from_args(args, loss="cc", seed=0, out=args.out)
    print(markdown_table(comparison_table(run_comparison(base, args.losses, args.seeds, args.out))))
    return 0


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _require_notebooks_extra(command: str) -> None:
    """Sweeps run notebook 02 with papermill: say how to install it instead of a bare ImportError."""
    import importlib

    missing = []
    for name in ("papermill", "yaml", "ipykernel"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ValueError(
            f"`python -m ccloss {command}` runs the notebooks with papermill, which is not installed here "
            f"(missing: {', '.join(missing)}): pip install 'ccloss[notebooks]' (in a clone: make setup)"
        )


def _sweep_command(args: argparse.Namespace) -> int:
    _require_notebooks_extra("sweep")
    from .experiments.report import write_report
    from .experiments.sweep import NAME_UNSAFE, load_sweep, run_sweep

    sweep = load_sweep(args.file, {name: _parse_value(value) for name, value in (args.parameters or [])})
    if args.name:
        if NAME_UNSAFE.search(args.name):
            raise ValueError(f"--name {args.name!r} must be a plain folder name")
        sweep.name = args.name
    try:
        result = run_sweep(
            sweep,
            args.out,
            jobs=args.jobs,
            dry_run=args.dry_run,
            log=lambda message: print(message, flush=True),
            point_index=args.point,
        )
    except RuntimeError as error:  # another sweep holds the folder
        raise ValueError(str(error)) from None
    if args.dry_run:
        return 0
    print(result.summary(), flush=True)
    if result.ok and args.report:
        print(write_report(result.sweep_dir)["markdown"])
    return 0 if result.ok else 1


def _report_command(args: argparse.Namespace) -> int:
    from .experiments.report import export_results, write_report

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
    from .experiments import study

    try:
        runs = study.load_study(args.folders)
    except FileNotFoundError as error:
        raise ValueError(str(error)) from None
    if args.only:
        runs = study.only_labels(runs, args.only)
    if args.part5:
        from .experiments import study_separation

        print(study_separation.markdown(runs))
        return 0
    print(study.study_markdown(runs))
    return 0


_COMMANDS = {
    "train": _train_command,
    "compare": _compare_command,
    "sweep": _sweep_command,
    "report": _report_command,
    "study": _study_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(_COMMANDS[args.command](args) or 0)
    except (datasets.DatasetMissingError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (ValueError, RunExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Preempted as error:
        print(f"stopped: {error}", file=sys.stderr)
        return EXIT_CODE
    except DiskFullError as error:
        print(f"error: {error.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
