"""Preemption: SIGTERM (what SLURM, Kubernetes and spot machines send before they stop a job) ends a
training run cleanly after the epoch under way, whose checkpoint is written as usual; a second SIGTERM
stops at once, the last checkpoint intact. A resumed run then equals an uninterrupted one.

Give the scheduler's grace period at least one epoch (SLURM: ``#SBATCH --signal=TERM@300``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

__all__ = ["Preempted", "sigterm_ends_after_epoch"]

#: The exit code of a process ended by SIGTERM (128 + 15), which the CLI returns after a clean stop.
EXIT_CODE = 143


class Preempted(RuntimeError):
    """SIGTERM arrived: the run stopped after saving its checkpoint; rerun it with resume to continue."""


@contextlib.contextmanager
def sigterm_ends_after_epoch() -> Iterator[Callable[[], bool]]:
    """While inside, SIGTERM sets a flag instead of killing the process; yields the function that
    reads it. Outside the main thread (where Python cannot take signals) the flag stays False."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame) -> None:
        if requested.is_set():  # the second one: stop now (the last checkpoint is whole)
            raise SystemExit(EXIT_CODE)
        requested.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGTERM, previous)
