"""Plumbing a learner need not read: atomic files, run directories, devices, torch.distributed, SIGTERM."""

import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

_PACKAGE = str(Path(__file__).resolve().parents[1]) + os.sep


def warn(message: str) -> None:
    """A UserWarning at the first caller outside ccloss (a script, a notebook cell), else a ``warning:`` line."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith((_PACKAGE, "<frozen")):
        frame, level = frame.f_back, level + 1
    if frame is None:
        print(f"warning: {message}", file=sys.stderr, flush=True)
    else:
        warnings.warn(message, UserWarning, stacklevel=level)


def exit_code_of(command: Callable[[], Any], errors: Sequence[tuple[type, int, str]], on_interrupt: str) -> int:
    """Run ``command()``; an error of a kind in ``errors`` (first match wins) prints ``<prefix>: <message>``
    on stderr and returns its code; Ctrl-C prints ``interrupted; <on_interrupt>`` and returns 130."""
    try:
        return int(command() or 0)
    except tuple(kind for kind, _, _ in errors) as error:
        _, code, prefix = next(entry for entry in errors if isinstance(error, entry[0]))
        message = error.strerror if isinstance(error, OSError) and error.strerror else error
        print(f"{prefix}: {message}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print(f"interrupted; {on_interrupt}", file=sys.stderr)
        return 130
