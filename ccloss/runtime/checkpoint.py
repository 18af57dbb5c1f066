"""Run directories: check before a run, checkpoint after each epoch, resume after a crash.

A run directory holds ``config.json``, ``metrics.json`` (``status``, ``history``, ``final``),
``checkpoint.pt`` (model, optimiser, scheduler, criterion state, RNG states, history) and
``checkpoint.prev.pt``, the checkpoint before it. Each is written atomically
(:mod:`ccloss.runtime.atomic`), so a run killed at any moment resumes from the last finished epoch
and, on the CPU, ends with exactly the metrics of an uninterrupted one. A file found truncated or
garbled is named in a warning or an error that says what to do: an unreadable checkpoint falls back
to the previous one, an unreadable config.json or metrics.json is rebuilt from the checkpoint, and
nothing is restarted or overwritten without ``overwrite``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import read_json, replace_keeping_previous, write_json

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "CHECKPOINT_FILE",
    "RESUME_FREE",
    "PREVIOUS_CHECKPOINT_FILE",
    "RunExistsError",
    "CorruptRunError",
    "read_checkpoint",
    "load_checkpoint",
    "seed_everything",
    "rng_state",
    "set_rng_state",
    "prepare_run_dir",
    "start_run_dir",
    "save_epoch",
    "is_complete",
]

CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE = "config.json", "metrics.json", "checkpoint.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"  #: the checkpoint before the last one
#: What a checkpoint must hold to resume from it.
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "criterion", "epoch", "step", "history", "best", "rng")
#: Config fields that may differ between a run and its resumption (or a sweep point's reruns):
#: where and how it runs, not what it trains. ``compile`` and ``channels_last`` change only the
#: order of floating-point operations, so run directories made before channels_last became the
#: default stay loadable and resumable.
RESUME_FREE = frozenset(
    {
        "out",
        "out_dir",
        "resume",
        "overwrite",
        "quiet",
        "device",
        "download",
        "data_dir",
        "compile",
        "channels_last",
        "class_measures",
    }
)

#: Loss hyperparameters added after runs were saved, with the value that computes what those runs
#: computed: a saved run without the key is the same run (``tau`` only acts in the pair_softmax form,
#: which did not exist before it).
ADDED_LOSS_HPARAMS = {"tau": 0.1}


class RunExistsError(RuntimeError):
    """The run directory already holds a run and neither resume nor overwrite was asked for."""


class CorruptRunError(ValueError):
    """A run directory's files cannot be read back (truncated, garbled); the message says which and what to do."""


def read_checkpoint(path: Path) -> dict:
    """A checkpoint file, checked: a dict with every key of :data:`CHECKPOINT_KEYS`; else CorruptRunError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as error:  # truncated zip, garbage bytes, a pickle of something else ...
        raise CorruptRunError(f"{path} cannot be read ({type(error).__name__}: {str(error)[:200]})") from None
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CorruptRunError(f"{path} is not a ccloss checkpoint (it lacks {', '.join(missing)})")
    return state


def load_checkpoint(out: Path) -> dict | None:
    """The newest readable checkpoint of a run directory: ``checkpoint.pt``, else ``checkpoint.prev.pt``
    (with a warning naming the unreadable file, which is set aside as ``<name>.unreadable`` so the
    next save keeps the good one); None when neither exists. Raises CorruptRunError when the ones
    there are all unreadable."""
    problems: list[tuple[Path, str]] = []
    for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE):
        if not (out / name).exists():
            continue
        try:
            state = read_checkpoint(out / name)
        except CorruptRunError as error:
            problems.append((out / name, str(error)))
            continue
        for bad, message in problems:
            os.replace(bad, bad.with_name(bad.name + ".unreadable"))
            warnings.warn(
                f"{message}; set aside as {bad.name}.unreadable, resuming from {out / name} "
                f"(after epoch {state['epoch'] + 1})",
                stacklevel=2,
            )
        return state
    if problems:
        raise CorruptRunError(
            "; ".join(message for _, message in problems) + f". No readable checkpoint is left in {out}: delete "
            "the folder or pass --overwrite (overwrite=True) to train it again"
        )
    return None


def _read_json_or_warn(path: Path, rebuilt_from: str) -> dict | None:
    """``path`` read as JSON; None (with a warning naming it) when it is missing or unreadable."""
    if not path.exists():
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError) as error:
        warnings.warn(f"{path} cannot be read ({error}); it is rebuilt from {rebuilt_from}", stacklevel=3)
        return None
    return data if isinstance(data, dict) else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def prepare_run_dir(
    config: dict, out: Path, resume: bool, overwrite: bool, loss_hparams: dict | None = None
) -> dict | None:
    """Check ``out`` before a run: None (start afresh), ``{"complete": True}`` (a finished run:
    only load it) or the checkpoint to resume from. Raises :class:`RunExistsError` for a run that
    was neither resumed nor overwritten, :class:`CorruptRunError` when its files cannot be read back,
    and ValueError when the saved config differs in a field outside :data:`RESUME_FREE`, or when the
    loss's resolved hyperparameters (``loss_hparams``, e.g. after a change of the package's defaults)
    differ from those the run was trained with."""
    has_run = any((out / name).exists() for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE, METRICS_FILE))
    if has_run and overwrite:
        return None
    if has_run and not resume:
        raise RunExistsError(
            f"{out} already holds a run; pass --resume to continue (or load) it, or --overwrite to start again"
        )
    if not has_run:
        return None
    metrics = _read_json_or_warn(out / METRICS_FILE, "the checkpoint")
    checkpoint = None if metrics and metrics.get("status") == "complete" else load_checkpoint(out)
    if checkpoint is None and not (metrics and metrics.get("status") == "complete"):
        if metrics and metrics.get("history"):
            raise CorruptRunError(
                f"{out / METRICS_FILE} records {len(metrics['history'])} epoch(s) but no checkpoint is left in {out}: "
                "pass --overwrite (overwrite=True) to train it again"
            )
        return None
    _check_config(out, config, checkpoint)
    _check_loss_hparams(
        out, loss_hparams, (metrics or {}).get("loss_hparams") or (checkpoint or {}).get("loss_hparams")
    )
    return {"complete": True} if checkpoint is None else checkpoint


def _check_config(out: Path, config: dict, checkpoint: dict | None) -> None:
    saved = _read_json_or_warn(out / CONFIG_FILE, "the checkpoint")
    if saved is None and checkpoint is not None and checkpoint.get("config"):
        saved = checkpoint["config"]
        write_json(out / CONFIG_FILE, saved)
    saved = saved or {}
    changed = sorted(k for k in config if k not in RESUME_FREE and k in saved and saved[k] != config[k])
    if changed:
        details = ", ".join(f"{k}: {saved[k]!r} -> {config[k]!r}" for k in changed)
        raise ValueError(f"cannot resume {out}: the config differs from the saved one ({details}); use another --out")


def _check_loss_hparams(out: Path, loss_hparams: dict | None, saved: dict | None) -> None:
    if loss_hparams is None or not saved:
        return
    now = json.loads(json.dumps(loss_hparams))  # the form metrics.json holds (tuples as lists)
    saved = {**{k: v for k, v in ADDED_LOSS_HPARAMS.items() if k in now}, **saved}
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
        raise ValueError(
            f"cannot resume {out}: it was trained with other loss hyperparameters ({details}; the package's "
            "defaults may have changed since); use another --out, or --overwrite to train it again"
        )


def start_run_dir(out: Path, config: dict, extra: dict) -> None:
    """A fresh run: remove a stale checkpoint and metrics, write the config and a running status."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE, METRICS_FILE):
        (out / stale).unlink(missing_ok=True)
    write_json(out / CONFIG_FILE, config)
    write_json(out / METRICS_FILE, {"status": "running", "history": [], "final": None, **extra})


def save_epoch(out: Path, state: dict, metrics: dict) -> None:
    """The checkpoint first (the one it replaces kept as ``checkpoint.prev.pt``), then the metrics: a
    complete ``metrics.json`` implies its checkpoint. A full disk raises DiskFullError and leaves both
    as they were."""
    replace_keeping_previous(out / CHECKPOINT_FILE, out / PREVIOUS_CHECKPOINT_FILE, lambda f: torch.save(state, f))
    write_json(out / METRICS_FILE, metrics)


def is_complete(run_dir: str | os.PathLike) -> bool:
    """True when ``run_dir/metrics.json`` says the run finished."""
    try:
        return read_json(Path(run_dir) / METRICS_FILE).get("status") == "complete"
    except (OSError, ValueError):
        return False


def read_metrics(run_dir: str | os.PathLike) -> Any:
    return read_json(Path(run_dir) / METRICS_FILE)


def load_run(run_dir: str | os.PathLike, device: str = "cpu"):
    """Load a run directory: returns (config, metrics, model in eval mode on ``device``)."""
    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / name} is missing: is {run_dir} a finished run directory?")
    from ..config import TrainConfig, build_for_config  # the run's config builds its model
    from ..data import dataset_info

    try:
        saved_config, metrics = read_json(run_dir / CONFIG_FILE), read_json(run_dir / METRICS_FILE)
        state = read_checkpoint(run_dir / CHECKPOINT_FILE)
    except (ValueError, CorruptRunError) as error:
        raise CorruptRunError(
            f"cannot load {run_dir}: {error}. Resuming it (--resume) rebuilds config.json and metrics.json from "
            "its checkpoint; an unreadable checkpoint of a finished run means training it again (--overwrite)"
        ) from None
    config = TrainConfig.from_dict(saved_config)
    config.pretrained = None  # the checkpoint holds the weights
    config = _with_saved_hparams(config, metrics)
    _, model = build_for_config(config, dataset_info(config.dataset), torch.device(device))
    model.load_state_dict(state["model"])
    model.eval()
    return config, metrics, model


def _with_saved_hparams(config, metrics: dict):
    """The loss hyperparameters the run was trained with (metrics.json records them), so a later
    change of a loss's defaults does not change what a loaded run means."""
    saved = metrics.get("loss_hparams")
    if not saved:
        return config
    return dataclasses.replace(config, lam=None, form=None, group_size=None, loss_params=dict(saved))
