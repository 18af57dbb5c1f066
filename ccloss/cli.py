"""Command line: ``python -m ccloss train|compare|run-all|sweep|report``.

Every ``train`` flag is a :class:`ccloss.train.TrainConfig` field (``--width-mult`` sets
``width_mult``); ``--help`` shows each with its default. Unknown names exit with code 2 and
list the valid ones.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from typing import Any, Optional, Sequence

from . import data as datasets
from .losses import LOSSES, describe_losses
from .models import BACKBONES
from .attention import ACTIVATIONS
from .train import CC_SCOPES, DEVICES, EVAL_SPLITS, NonFiniteLossError, RunExistsError, TrainConfig

__all__ = ["main", "build_parser", "config_from_args"]

_HELP = {
    "dataset": "dataset name", "data_dir": "folder holding the datasets (see data/README.md)",
    "backbone": "backbone network",
    "cam_activation": "the SE block's hidden activation (leaky_relu cannot die)",
    "cam_min_hidden": "a floor on the SE block's hidden width (1: none)",
    "eval_split": "evaluate on test, or on val (then train on train without val: for choosing settings)", "width_mult": "channel width multiplier (1.0 = standard; 0.25 for CPU demos)",
    "stem": "first layers: cifar (3x3, no max-pool) or imagenet; default: the dataset's suggestion",
    "pretrained": "initial weights: 'imagenet' (torchvision, needs internet) or a state-dict path",
    "loss": "training objective", "lam": "weight of the loss's extra term (CC-Loss: lambda); default: the loss's own",
    "form": "CC-Loss form: ratio, sums, difference or log_ratio (default ratio)",
    "group_size": "take the CC statistic over groups of this many samples (default: the whole batch)",
    "batch_size": "mini-batch size per process", "epochs": "training epochs", "lr": "SGD learning rate",
    "momentum": "SGD momentum", "weight_decay": "SGD weight decay",
    "lr_milestones": "fractions of the epochs where the lr is multiplied by --lr-gamma",
    "lr_gamma": "lr decay factor", "seed": "random seed (CPU runs are bit-for-bit repeatable)",
    "device": "auto (CUDA when available), cpu or cuda", "amp": "bf16 autocast (CUDA only)",
    "channels_last": "channels_last memory format", "compile": "torch.compile the model",
    "cc_scope": "under torchrun: CC-Loss over the global batch (gathered) or per process",
    "sync_bn": "under torchrun: synchronised BatchNorm", "download": "try torchvision's download where one exists",
    "out": "run directory", "resume": "continue an interrupted run (a finished one is just loaded)",
    "overwrite": "start again even if --out holds a run", "quiet": "no progress bar or per-epoch lines",
}
_CHOICES = {
    "dataset": tuple(datasets.DATASETS), "backbone": BACKBONES, "loss": tuple(LOSSES), "device": DEVICES,
    "stem": ("cifar", "imagenet"), "cc_scope": CC_SCOPES, "form": ("ratio", "sums", "difference", "log_ratio"),
    "eval_split": EVAL_SPLITS, "cam_activation": ACTIVATIONS,
}


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), _literal(value)


def add_train_arguments(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One flag per TrainConfig field, named after it, with its default in the help."""
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = _HELP.get(f.name, f.name)
        if f.name == "cam":
            parser.add_argument("--no-cam", dest="cam", action="store_false", help="drop the channel attention module (default: with CAM)")
        elif f.name == "loss_params":
            parser.add_argument("--loss-param", dest="loss_params", action="append", type=_key_value, default=[],
                                metavar="NAME=VALUE", help="a hyperparameter of the loss (repeatable); see the list below")
        elif isinstance(default, bool) and default:
            parser.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                                help=f"turn off: {help_text} (default: on)")
        elif isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, action="store_true", help=f"{help_text} (default: off)")
        elif f.name == "lr_milestones":
            parser.add_argument(flag, dest=f.name, type=float, nargs="+", default=list(default), help=f"{help_text} (default: {' '.join(map(str, default))})")
        else:
            kind = {"width_mult": float, "lam": float, "lr": float, "momentum": float, "weight_decay": float,
                    "lr_gamma": float, "batch_size": int, "epochs": int, "seed": int, "group_size": int,
                    "cam_min_hidden": int}.get(f.name, str)
            parser.add_argument(flag, dest=f.name, type=kind, default=default, choices=_CHOICES.get(f.name),
                                help=f"{help_text} (default: {default})")


def config_from_args(args: argparse.Namespace, **overrides: Any) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["loss_params"] = dict(values.get("loss_params") or [])
    values["lr_milestones"] = tuple(values.get("lr_milestones", TrainConfig().lr_milestones))
    values.update(overrides)
    return TrainConfig(**values)


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m ccloss", description="CC-Loss: train, compare, sweep and report.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train_parser = sub.add_parser("train", help="train one model into a run directory",
                                  description="Train one model into a run directory.",
                                  epilog="Losses and their hyperparameters (--loss-param NAME=VALUE):\n" + describe_losses(),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(train_parser)

    compare = sub.add_parser("compare", help="CE+CAM against CC-Loss over seeds, as a table",
                             description="Train (or load) each loss for each seed and print mean +/- std.")
    add_train_arguments(compare, skip=("loss", "seed", "out", "resume", "overwrite"))
    compare.add_argument("--losses", nargs="+", default=["ce", "cc"], choices=tuple(LOSSES), help="losses to compare (default: ce cc)")
    compare.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    compare.add_argument("--out", default="runs/compare", help="folder of the run directories (default: runs/compare)")

    run_all = sub.add_parser("run-all", help="what `make run` does: execute the notebooks, then print the table")
    run_all.add_argument("--notebooks", nargs="*", default=None, help="notebook files (default: notebooks/0*.ipynb)")

    study = sub.add_parser("study", help="the CC-Loss default study: mean +/- std per candidate and the selection",
                           description="Read the study's sweep folders (points with a label) and apply the "
                                       "pre-registered selection rule of docs/study_cc_default.md.")
    study.add_argument("folders", nargs="+", help="sweep folders, e.g. runs/study_screen runs/study_finalists")

    try:
        from . import sweep as sweep_module
    except ImportError:  # pragma: no cover - the sweep module is part of the package
        sweep_module = None
    if sweep_module is not None and hasattr(sweep_module, "add_cli"):
        sweep_module.add_cli(sub)
    return parser


def _print_comparison(runs) -> None:
    from .experiments import comparison_table
    from .tables import markdown_table

    print(markdown_table(comparison_table(runs)))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            from .train import train

            metrics = train(config_from_args(args))
            final = metrics.get("final") or {}
            split = args.eval_split
            print(f"done: {split}_acc {final.get(f'{split}_acc', float('nan')):.2f}%  "
                  f"best {final.get(f'best_{split}_acc', float('nan')):.2f}%  run directory {args.out}")
            return 0
        if args.command == "compare":
            from .experiments import run_comparison

            base = config_from_args(args, loss="cc", seed=0, out=args.out)
            _print_comparison(run_comparison(base, args.losses, args.seeds, args.out))
            return 0
        if args.command == "study":
            from .study import load_study, study_markdown

            print(study_markdown(load_study(args.folders)))
            return 0
        if args.command == "run-all":
            from .notebook_runner import run_all

            return run_all(args.notebooks)
        if hasattr(args, "handler"):
            return int(args.handler(args) or 0)
        parser.error(f"unknown command {args.command!r}")
    except datasets.DatasetMissingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (ValueError, RunExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    return 0
