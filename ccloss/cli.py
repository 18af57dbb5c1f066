"""``python -m ccloss train``: one argparse flag per TrainConfig field, with its help, choices and default."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

from . import data as datasets
from .config import PRESET_HELP, PRESETS, TrainConfig
from .losses import LOSSES
from .options import kind
from .runtime import exit_code_of
from .runtime.atomic import DiskFullError
from .runtime.checkpoint import RunExistsError
from .runtime.preemption import EXIT_CODE, Preempted
from .train import NonFiniteLossError, fit

__all__ = ["main", "build_parser", "add_train_arguments", "config_from_args", "parse_loss_params", "describe_losses"]

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
    return float(text) if target is float else text


def parse_loss_params(pairs: Sequence[tuple[str, str]], losses: Sequence[str]) -> dict[str, Any]:
    """``--loss-param NAME=VALUE`` typed by NAME's field in the first of ``losses`` that has it (else a string)."""
    params: dict[str, Any] = {}
    for name, text in pairs:
        owner = next((LOSSES[loss] for loss in losses if loss in LOSSES and name in LOSSES[loss].defaults), None)
        if owner is None:
            params[name] = text
            continue
        target, nullable = kind(next(f for f in dataclasses.fields(owner.Options) if f.name == name))
        try:
            params[name] = _typed(text, target, nullable)
        except ValueError as error:
            what = target.__name__ + (" or None" if nullable else "")
            raise ValueError(f"--loss-param {name}={text}: loss {owner.name!r} needs a {what} ({error})") from None
    return params


def describe_losses() -> str:
    """The losses, one per line: name, paper name, objective, then the hyperparameters with their defaults."""
    hparams = {
        name: ", ".join(f"{k}={v!r}" for k, v in cls.defaults.items()) or "(none)" for name, cls in LOSSES.items()
    }
    return "\n".join(f"{n:<9}{c.paper_name:<11}{c.summary}\n    {hparams[n]}" for n, c in LOSSES.items())


def _flag(spec: dataclasses.Field, default: Any) -> tuple[str, dict]:
    """The flag and ``add_argument`` keywords of one TrainConfig field, from its type and metadata."""
    dashed, help_text = spec.name.replace("_", "-"), spec.metadata.get("help", spec.name)
    target, nullable = kind(spec)
    if spec.name == "loss_params":
        return "--loss-param", {"action": "append", "type": _key_value, "default": [], "metavar": "NAME=VALUE",
                                "help": f"{help_text} (repeatable; listed below)"}  # fmt: skip
    if target is bool:
        if default:
            return f"--no-{dashed}", {"action": "store_false", "help": f"turn off: {help_text} (default: on)"}
        return f"--{dashed}", {"action": "store_true", "help": f"{help_text} (default: off)"}
    if spec.name == "lr_milestones":
        return f"--{dashed}", {"type": float, "nargs": "+", "default": list(default),
                               "help": f"{help_text} (default: {' '.join(map(str, default))})"}  # fmt: skip
    parse = lambda text: _typed(text, target, nullable)  # noqa: E731
    parse.__name__ = target.__name__  # what argparse prints: "invalid int value"
    keywords = {"type": parse, "default": default, "choices": spec.metadata.get("choices") or None}
    return f"--{dashed}", {**keywords, "help": f"{help_text} (default: {default})"}


def add_train_arguments(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One flag per TrainConfig field, and ``--preset``, but those in ``skip``."""
    for spec in dataclasses.fields(TrainConfig):
        if spec.name not in skip:
            flag, keywords = _flag(spec, getattr(TrainConfig(), spec.name))
            parser.add_argument(flag, dest=spec.name, **keywords)
    if "preset" not in skip:
        parser.add_argument("--preset", choices=tuple(PRESETS), default=None, help=PRESET_HELP)


def config_from_args(args: argparse.Namespace, **overrides: Any) -> TrainConfig:
    """The TrainConfig of parsed flags; with ``--preset``, flags that differ from their defaults override it."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    losses = getattr(args, "losses", None) or [overrides.get("loss", values.get("loss"))]
    values["loss_params"] = parse_loss_params(values.get("loss_params") or [], losses)
    values["lr_milestones"] = tuple(values.get("lr_milestones", TrainConfig().lr_milestones))
    if getattr(args, "preset", None):
        given = {k: v for k, v in values.items() if v != getattr(TrainConfig(), k)}
        return TrainConfig.from_preset(args.preset, **{**given, **overrides})
    return TrainConfig(**{**values, **overrides})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ccloss", description="CC-Loss: train one model.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = sub.add_parser(
        "train",
        help="train one model into a run directory",
        description="Train one model into a run directory (sweeps and reports: python -m experiments).",
        epilog="Losses and their hyperparameters (--loss-param NAME=VALUE):\n" + describe_losses(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_arguments(train)
    return parser


def _train(args: argparse.Namespace) -> int:
    final, split = fit(config_from_args(args)).get("final") or {}, args.eval_split
    acc, best = final.get(f"{split}_acc", float("nan")), final.get(f"best_{split}_acc", float("nan"))
    print(f"done: {split}_acc {acc:.2f}%  best {best:.2f}%  run directory {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ccloss train``: 0 done, 1 missing data, NaN or full disk, 2 bad input, EXIT_CODE preempted, 130."""
    args = build_parser().parse_args(argv)
    errors = [(DiskFullError, 1, "error"), (datasets.DatasetMissingError, 1, "error"), (NonFiniteLossError, 1, "error")]
    errors += [(ValueError, 2, "error"), (RunExistsError, 2, "error"), (Preempted, EXIT_CODE, "stopped")]
    return exit_code_of(lambda: _train(args), errors, "rerun with --resume to continue")
