"""Atomic writes (fsynced temporary file, renamed); a full disk is :class:`DiskFullError`, the old file intact."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
RESERVE = 1 << 20  #: bytes kept free beyond a file's size (the file system's own blocks)


class DiskFullError(OSError):
    """No space left (or over quota) for a file; the file it was to replace is intact."""


def _disk_full(path: Path, size: int) -> DiskFullError:
    need, free = f"{size / 1e6:.2f} MB to write, " if size else "", shutil.disk_usage(path.parent).free / 1e6
    kept = f"the previous {path.name} is intact" if path.exists() else "nothing was written"
    return DiskFullError(errno.ENOSPC, f"no space left on the device while writing {path} ({need}{free:.2f} MB "
                         f"free); {kept}: free some space, then rerun (a run resumes with --resume)")  # fmt: skip


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w",
                 previous: str | os.PathLike | None = None, size: int = 0) -> Path:  # fmt: skip
    """``write(file)`` on a temporary file renamed to ``path`` (the old one kept as ``previous`` when given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(path.parent).free < size + RESERVE:
        raise _disk_full(path, size)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)  # mkstemp makes the file 0600: give it the usual permissions
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException as error:
        free = shutil.disk_usage(path.parent).free  # measured with the temporary file still there
        if os.path.exists(tmp):
            os.unlink(tmp)
        full = isinstance(error, OSError) and error.errno in FULL_DISK
        if full or (isinstance(error, (OSError, RuntimeError)) and free < RESERVE):
            raise _disk_full(path, size) from error
        raise
    with contextlib.suppress(OSError):  # the rename flushed too, where a folder can be fsynced
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    text = json.dumps(data, indent=2, default=_jsonable)
    return atomic_write(path, lambda f: f.write(text), size=len(text.encode()))


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as handle:
        return json.load(handle)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # tensors and NumPy arrays/scalars
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
