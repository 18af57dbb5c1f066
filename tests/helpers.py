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
