"""Plumbing a learner need not read: atomic files, run directories, devices, torch.distributed, SIGTERM."""

import os
import sys
import warnings
from pathlib import Path

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
