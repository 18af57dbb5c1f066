"""SIGTERM ends a run after the epoch under way (checkpoint written), a second at once (SLURM: --signal=TERM@300)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

#: The exit code of a process ended by SIGTERM (128 + 15), which the CLI returns after a clean stop.
EXIT_CODE = 143


#: What the first SIGTERM prints on stderr, so a job's log shows that it arrived.
ACKNOWLEDGED = "SIGTERM: stopping after the epoch under way, with its checkpoint (a second SIGTERM stops at once)"


class Preempted(RuntimeError):
    """SIGTERM arrived: the run stopped after saving its checkpoint; rerun it with resume to continue."""


@contextlib.contextmanager
def sigterm_ends_after_epoch(out: str | os.PathLike) -> Iterator[Callable[[], bool]]:
    """Inside, SIGTERM sets a flag (yields its reader); a second exits with :data:`EXIT_CODE`."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame) -> None:
        if requested.is_set():  # os.write: safe wherever the signal lands, a print to stderr included
            os.write(2, f"stopped at once by a second SIGTERM; the last checkpoint in {out} is whole: rerun "
                        "with --resume (resume=True) to continue from it\n".encode())  # fmt: skip
            raise SystemExit(EXIT_CODE)
        requested.set()
        os.write(2, f"{ACKNOWLEDGED}\n".encode())

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGTERM, previous)
