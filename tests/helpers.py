"""Helpers shared by the test modules."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, env=None, cwd=ROOT):
    """``python -m ccloss ARGS`` in a subprocess (one thread), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "ccloss", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=600,
    )


#: Keys of a run's metrics that measure time: they differ between two runs of the same computation.
TIMINGS = frozenset({"seconds", "train_seconds", "images_per_sec", "class_measures_seconds"})


def without_timings(metrics: dict) -> dict:
    """A run's metrics.json without its timings: what an exact repeat (or a resumed run) must equal."""
    return {
        "status": metrics["status"],
        "history": [{k: v for k, v in record.items() if k not in TIMINGS} for record in metrics["history"]],
        "final": {k: v for k, v in (metrics["final"] or {}).items() if k not in TIMINGS},
    }


def wait_for_epochs(out: Path, epochs: int, process=None, timeout_s: float = 300) -> None:
    """Wait until the run in ``out`` has ``epochs`` epochs in its metrics.json (``process`` must live)."""
    import time

    from ccloss.runtime.atomic import read_json

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if len(read_json(out / "metrics.json")["history"]) >= epochs:
                return
        except (OSError, ValueError, KeyError):
            pass
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the run ended early (exit code {process.returncode})")
        time.sleep(0.02)
    raise AssertionError(f"{out} did not reach {epochs} epoch(s) in {timeout_s} s")
