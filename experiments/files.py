"""Small files of the experiments, written atomically: a temporary file beside the target, fsynced,
then ``os.replace`` (POSIX rename is atomic), so a reader (or a rerun after a kill) sees the old file
or the new one, never half of one. JSON only needs the standard library: no torch import here."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["METRICS_FILE", "CONFIG_FILE", "POINT_FILE", "atomic_write", "write_json", "read_json", "is_complete"]

METRICS_FILE = "metrics.json"  #: what ccloss.train writes into a run directory (history + final)
CONFIG_FILE = "config.json"  #: the run's TrainConfig, as ccloss.train writes it
POINT_FILE = "point.json"  #: a sweep point's parameters and status


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Call ``write(file)`` on a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy or torch scalars and arrays
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write(path, lambda handle: json.dump(data, handle, indent=2, default=_jsonable))


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as handle:
        return json.load(handle)


def is_complete(run_dir: str | os.PathLike) -> bool:
    """True when ``run_dir/metrics.json`` says the run (or the sweep point) finished."""
    try:
        return read_json(Path(run_dir) / METRICS_FILE).get("status") == "complete"
    except (OSError, ValueError, AttributeError):
        return False
