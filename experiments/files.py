"""The experiments' small files: the names a run directory and a sweep point use, and the package's atomic
writers (a temporary file beside the target, fsynced, then renamed), so a reader or a rerun after a kill
sees the old file or the new one, never half of one."""

from __future__ import annotations

from ccloss.runtime.atomic import atomic_write, read_json, write_json
from ccloss.runtime.run_dir import CONFIG_FILE, METRICS_FILE, is_complete

__all__ = ["METRICS_FILE", "CONFIG_FILE", "POINT_FILE", "atomic_write", "write_json", "read_json", "is_complete"]

POINT_FILE = "point.json"  #: a sweep point's parameters and status
