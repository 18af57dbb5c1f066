"""Atomic file writes: write to a temporary file in the same folder, fsync it, ``os.replace`` it into
place, then fsync the folder (so the rename itself survives a power cut).

The one writer of the package: run directories, checkpoints, reports, figures and caches use it.
A reader (or a resumed run) sees either the old file or the new one, never half of one. A full disk
(ENOSPC, or a quota: EDQUOT) raises :class:`DiskFullError` naming the file, and leaves the old
file as it was; :func:`replace_keeping_previous` also keeps the file it replaces under another name.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DiskFullError",
    "atomic_write",
    "replace_keeping_previous",
    "write_json",
    "read_json",
    "save_torch",
    "fsync_dir",
]

FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No space left (or over quota) while writing a file; the file it was to replace is intact."""


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def _written_temporary(path: Path, write: Callable[[Any], None], mode: str) -> str:
    """``write(file)`` into a fsynced temporary file beside ``path``; its name. Removed on any failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)  # mkstemp makes the file 0600: give it the usual permissions
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.errno in FULL_DISK:
            raise DiskFullError(
                error.errno,
                f"no space left on the device while writing {path} ({os.strerror(error.errno)}); "
                f"{'the previous ' + path.name + ' is intact' if path.exists() else 'nothing was written'}: "
                "free some space, then rerun (a training run resumes with --resume)",
            ) from error
        raise
    return tmp


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Call ``write(file)`` on a temporary file beside ``path`` and rename it into place."""
    return _install(Path(path), _written_temporary(Path(path), write, mode))


def replace_keeping_previous(
    path: str | os.PathLike, previous: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb"
) -> Path:
    """:func:`atomic_write`, keeping the file it replaces as ``previous`` (the one before that is gone).

    The new file is complete on disk before anything is renamed; a process killed between the two
    renames leaves ``previous`` (the last good file) and no ``path``."""
    return _install(Path(path), _written_temporary(Path(path), write, mode), Path(previous))


def _install(path: Path, tmp: str, previous: Path | None = None) -> Path:
    """Rename the finished temporary file ``tmp`` to ``path`` (the old ``path`` to ``previous`` first,
    when given), then flush the folder's entries."""
    try:
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write(path, lambda f: json.dump(data, f, indent=2, sort_keys=False, default=_jsonable))


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as handle:
        return json.load(handle)


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write(path, lambda f: torch.save(obj, f), mode="wb")


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
