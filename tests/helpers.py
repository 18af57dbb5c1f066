"""Helpers shared by the test modules."""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
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


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder that ``build(folder)`` fills once per test session, also under pytest-xdist, whose workers
    would each rebuild a module fixture: the first worker builds it under a file lock in the folder the
    workers share, the others wait and read it (pytest-xdist's documented pattern). Read it, never write."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    folder, done = root / f"built-{name}", root / f"built-{name}.done"
    with FileLock(str(root / f"built-{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            done.touch()
    return folder


#: ``python -m ccloss`` arguments of the small run that the kill-and-resume tests interrupt (``--out`` last).
KILLED_RUN_ARGS = ("train", "--dataset", "digits", "--width-mult", "0.125", "--batch-size", "64", "--epochs", "3",
                   "--quiet", "--out")  # fmt: skip


def uninterrupted_cli_run(tmp_path_factory) -> dict:
    """metrics.json of ``KILLED_RUN_ARGS`` run to the end through the CLI, trained once per session for every
    test that kills the same run and resumes it."""

    from ccloss.runtime.atomic import read_json

    def build(folder: Path) -> None:
        result = cli(*KILLED_RUN_ARGS, str(folder / "full"))
        assert result.returncode == 0, result.stderr

    return read_json(built_once(tmp_path_factory, "cli-uninterrupted", build) / "full" / "metrics.json")
