"""The files of a run directory, by name, and whether the run finished: no torch here, so that the light
processes of a sweep (one per point, many per test run) can read a run without importing it."""

from __future__ import annotations

import os
from pathlib import Path

from .atomic import read_json

__all__ = ["CONFIG_FILE", "METRICS_FILE", "CHECKPOINT_FILE", "PREVIOUS_CHECKPOINT_FILE", "RUN_FILES", "is_complete"]

CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE = "config.json", "metrics.json", "checkpoint.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"  #: the checkpoint before the last one
RUN_FILES = (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE, METRICS_FILE)  #: a run's files besides its config


def is_complete(run_dir: str | os.PathLike) -> bool:
    """True when ``run_dir/metrics.json`` says the run (or a sweep point) finished."""
    try:
        return read_json(Path(run_dir) / METRICS_FILE).get("status") == "complete"
    except (OSError, ValueError, AttributeError):  # missing, unreadable, or not a JSON object
        return False
