"""Run directories: config.json, metrics.json and two checkpoints, written atomically; resume and load."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..pretrained import check_weights_file
from . import warn
from .atomic import atomic_write, read_json, write_json
from .run_dir import CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, PREVIOUS_CHECKPOINT_FILE, RUN_FILES

CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "criterion", "epoch", "step", "history", "best", "rng")
#: Config fields that may change between a run and its resumption: where and how it runs, not what it trains.
RESUME_FREE = frozenset({"out", "out_dir", "resume", "overwrite", "quiet", "device", "download", "data_dir",
                         "compile", "channels_last", "class_measures"})  # fmt: skip
ADDED_LOSS_HPARAMS = {"tau": 0.1}  #: added after runs were saved: the value that computes what they did


class RunExistsError(RuntimeError):
    """The run directory holds a run and neither resume nor overwrite was asked for."""


class CorruptRunError(ValueError):
    """A run directory's files cannot be read back; the message says which and what to do."""


class PathArgumentError(ValueError):
    """A path argument that cannot work; the one-line message names it and says what to do."""


def check_paths(config) -> None:
    """``--pretrained`` (a torch.save file), ``--data-dir`` and ``--out`` (writable folders) before anything loads."""
    try:
        if config.pretrained is not None:
            check_weights_file(config.pretrained)
    except (OSError, ValueError) as error:
        raise PathArgumentError(str(error)) from None
    data_dir, out = Path(config.data_dir), Path(config.out)
    if data_dir.exists() and not data_dir.is_dir():
        raise PathArgumentError(f"--data-dir {data_dir}: a file, not a folder; give the folder of the datasets")
    if out.exists() and not out.is_dir():
        raise PathArgumentError(f"--out {out}: a file, not a folder; give a folder for the run (made if missing)")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise PathArgumentError(f"--out {out}: {existing} is a file, no folder can be made in it; give another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{CONFIG_FILE}.", suffix=".tmp", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        fix = "give a folder you can write to"
        raise PathArgumentError(f"--out {out}: cannot write there ({error.strerror}); {fix}") from None


def read_checkpoint(path: Path) -> dict:
    """A checkpoint holding every key of :data:`CHECKPOINT_KEYS`, else CorruptRunError naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception:  # truncated zip, garbage: torch's own words (miniz, pickle) would not help
        raise CorruptRunError(f"{path} cannot be read (truncated or garbled, {path.stat().st_size} bytes)") from None
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CorruptRunError(f"{path} is not a ccloss checkpoint (it lacks {', '.join(missing)})")
    return state


def load_checkpoint(out: Path) -> dict | None:
    """The newest readable checkpoint (bad ones set aside as ``.unreadable``), None; CorruptRunError if none reads."""
    problems: list[tuple[Path, str]] = []
    for path in (out / CHECKPOINT_FILE, out / PREVIOUS_CHECKPOINT_FILE):
        try:
            state = read_checkpoint(path)
        except FileNotFoundError:
            continue
        except CorruptRunError as error:
            problems.append((path, str(error)))
            continue
        for bad, message in problems:
            os.replace(bad, bad.with_name(bad.name + ".unreadable"))
            warn(f"{message}; set aside as {bad.name}.unreadable, resuming from {path} (epoch {state['epoch'] + 1})")
        return state
    if problems:
        found = "; ".join(message for _, message in problems)
        raise CorruptRunError(f"{found}. No readable checkpoint is left in {out}: delete the folder or pass "
                              "--overwrite (overwrite=True) to train it again")  # fmt: skip
    return None


def _read_json_or_warn(path: Path) -> dict:
    try:
        data = read_json(path)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        warn(f"{path} cannot be read ({error}); it is rebuilt from the checkpoint")
        return {}
    return data if isinstance(data, dict) else {}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    cuda = {"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(), **cuda}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def prepare_run_dir(config, loss_hparams: dict | None = None) -> dict | None:
    """None (start afresh), ``{"complete": True}`` (load it) or the checkpoint to resume from; ValueError when the
    config (outside :data:`RESUME_FREE`) or the loss's hyperparameters differ from the run's."""
    check_paths(config)
    out = Path(config.out)
    for leftover in out.glob(".*.tmp"):  # atomic_write's, of a process killed mid-write
        leftover.unlink(missing_ok=True)
    if config.overwrite or not any((out / n).exists() for n in RUN_FILES):
        return None
    if not config.resume:
        raise RunExistsError(f"{out} already holds a run; pass --resume to continue (or load) it, "
                             "or --overwrite to start again")  # fmt: skip
    metrics = _read_json_or_warn(out / METRICS_FILE)
    complete = metrics.get("status") == "complete"
    checkpoint = None if complete else load_checkpoint(out)
    if checkpoint is None and not complete:
        if metrics.get("history"):
            raise CorruptRunError(f"{out / METRICS_FILE} records {len(metrics['history'])} epoch(s) but no checkpoint "
                                  f"is left in {out}: pass --overwrite (overwrite=True) to train it again")  # fmt: skip
        return None
    saved, now = _read_json_or_warn(out / CONFIG_FILE), config.to_dict()
    if not saved and checkpoint is not None and checkpoint.get("config"):
        write_json(out / CONFIG_FILE, saved := checkpoint["config"])
    saved = {k: v for k, v in saved.items() if k in now and k not in RESUME_FREE}
    _same(out, "the config differs from the saved one", saved, {k: now[k] for k in saved}, "use another --out")
    saved = metrics.get("loss_hparams") or (checkpoint or {}).get("loss_hparams")
    if loss_hparams is not None and saved:
        now = json.loads(json.dumps(loss_hparams))  # the form metrics.json holds (tuples as lists)
        saved = {**{k: v for k, v in ADDED_LOSS_HPARAMS.items() if k in now}, **saved}
        _same(out, "it was trained with other loss hyperparameters", saved, now,
              "the defaults may have changed; use another --out, or --overwrite to train it again")  # fmt: skip
    return {"complete": True} if checkpoint is None else checkpoint


def _same(out: Path, what: str, saved: dict, now: dict, advice: str) -> None:
    """ValueError listing the keys whose values differ between ``saved`` and ``now``."""
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
        raise ValueError(f"cannot resume {out}: {what} ({details}); {advice}")


def start_run_dir(out: Path, config: dict, extra: dict) -> None:
    """A fresh run: remove a stale checkpoint and metrics, write the config and a running status."""
    for stale in RUN_FILES:
        (out / stale).unlink(missing_ok=True)
    write_json(out / CONFIG_FILE, config)
    write_json(out / METRICS_FILE, {"status": "running", "history": [], "final": None, **extra})


def save_epoch(out: Path, state: dict, metrics: dict) -> None:
    """The checkpoint (the last one kept as ``checkpoint.prev.pt``), then metrics.json, which thus implies it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getbuffer()
    atomic_write(out / CHECKPOINT_FILE, lambda f: f.write(data), "wb", out / PREVIOUS_CHECKPOINT_FILE, len(data))
    write_json(out / METRICS_FILE, metrics)


def load_run(run_dir: str | os.PathLike, device: str = "cpu"):
    """(config, metrics, model in eval mode) of a run directory, with the loss hyperparameters it was trained with."""
    from ..config import TrainConfig, build_for_config  # the run's config builds its model
    from ..data import dataset_info

    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / name} is missing: is {run_dir} a finished run directory?")
    try:
        saved_config, metrics = read_json(run_dir / CONFIG_FILE), read_json(run_dir / METRICS_FILE)
        state = read_checkpoint(run_dir / CHECKPOINT_FILE)
    except (ValueError, CorruptRunError) as error:
        advice = "Resuming it (--resume) rebuilds config.json and metrics.json from its checkpoint; an unreadable"
        advice += " checkpoint of a finished run means training it again (--overwrite)"
        raise CorruptRunError(f"cannot load {run_dir}: {error}. {advice}") from None
    config = dataclasses.replace(TrainConfig.from_dict(saved_config), pretrained=None)  # the checkpoint has the weights
    if saved := metrics.get("loss_hparams"):  # what it was trained with, whatever the defaults are now
        config = dataclasses.replace(config, lam=None, form=None, group_size=None, loss_params=dict(saved))
    _, model = build_for_config(config, dataset_info(config.dataset), torch.device(device))
    model.load_state_dict(state["model"])
    return config, metrics, model.eval()
