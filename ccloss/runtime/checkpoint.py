"""Run directories: check before a run, checkpoint after each epoch, resume after a crash.

A run directory holds ``config.json``, ``metrics.json`` (``status``, ``history``, ``final``) and
``checkpoint.pt`` (model, optimiser, scheduler, criterion state, RNG states, history). Each is
written atomically (:mod:`ccloss.runtime.atomic`), so a run killed at any moment resumes from the
last finished epoch and, on the CPU, ends with exactly the metrics of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import read_json, save_torch, write_json

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "CHECKPOINT_FILE",
    "RESUME_FREE",
    "RunExistsError",
    "seed_everything",
    "rng_state",
    "set_rng_state",
    "prepare_run_dir",
    "start_run_dir",
    "save_epoch",
    "is_complete",
]

CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE = "config.json", "metrics.json", "checkpoint.pt"
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
    was neither resumed nor overwritten, and ValueError when the saved config differs in a field
    outside :data:`RESUME_FREE`, or when the loss's resolved hyperparameters (``loss_hparams``,
    e.g. after a change of the package's defaults) differ from those the run was trained with."""
    checkpoint_path = out / CHECKPOINT_FILE
    has_run = checkpoint_path.exists() or (out / METRICS_FILE).exists()
    if has_run and overwrite:
        return None
    if has_run and not resume:
        raise RunExistsError(
            f"{out} already holds a run; pass --resume to continue (or load) it, or --overwrite to start again"
        )
    if not checkpoint_path.exists():
        return None
    saved = read_json(out / CONFIG_FILE) if (out / CONFIG_FILE).exists() else {}
    changed = sorted(k for k in config if k not in RESUME_FREE and k in saved and saved[k] != config[k])
    if changed:
        details = ", ".join(f"{k}: {saved[k]!r} -> {config[k]!r}" for k in changed)
        raise ValueError(f"cannot resume {out}: the config differs from the saved one ({details}); use another --out")
    _check_loss_hparams(out, loss_hparams)
    if is_complete(out):
        return {"complete": True}
    return torch.load(checkpoint_path, map_location="cpu", weights_only=False)


def _check_loss_hparams(out: Path, loss_hparams: dict | None) -> None:
    saved = read_json(out / METRICS_FILE).get("loss_hparams") if (out / METRICS_FILE).exists() else None
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
    for stale in (CHECKPOINT_FILE, METRICS_FILE):
        (out / stale).unlink(missing_ok=True)
    write_json(out / CONFIG_FILE, config)
    write_json(out / METRICS_FILE, {"status": "running", "history": [], "final": None, **extra})


def save_epoch(out: Path, state: dict, metrics: dict) -> None:
    """The checkpoint first, then the metrics: a complete ``metrics.json`` implies its checkpoint."""
    save_torch(out / CHECKPOINT_FILE, state)
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

    config = TrainConfig.from_dict(read_json(run_dir / CONFIG_FILE))
    config.pretrained = None  # the checkpoint holds the weights
    config = _with_saved_hparams(config, read_json(run_dir / METRICS_FILE))
    _, model = build_for_config(config, dataset_info(config.dataset), torch.device(device))
    state = torch.load(run_dir / CHECKPOINT_FILE, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()
    return config, read_json(run_dir / METRICS_FILE), model


def _with_saved_hparams(config, metrics: dict):
    """The loss hyperparameters the run was trained with (metrics.json records them), so a later
    change of a loss's defaults does not change what a loaded run means."""
    saved = metrics.get("loss_hparams")
    if not saved:
        return config
    return dataclasses.replace(config, lam=None, form=None, group_size=None, loss_params=dict(saved))
