"""Per-point claims: several sweep processes (on one machine or on several sharing a folder, a SLURM job
array among them) share one sweep, and each point runs in exactly one of them at a time.

A process claims a point by creating ``<point>/.claim`` with ``O_CREAT | O_EXCL`` (atomic on local
file systems and on NFS v3 and later), holding its host, pid, a random token and a heartbeat time that
it refreshes every :data:`HEARTBEAT_S` seconds while the point runs. A claim whose holder is gone is
taken again: on the same host when its pid no longer exists, on another host when its heartbeat is
older than :data:`STALE_AFTER_S` (``$CCLOSS_CLAIM_STALE_S``). A takeover happens under a second
exclusive file (``.claim.takeover``) and checks the claim again inside it, so of two processes taking
one stale claim exactly one gets it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CLAIM_FILE", "HEARTBEAT_S", "STALE_AFTER_S", "Claim", "try_claim", "holder", "Heartbeat"]

CLAIM_FILE = ".claim"
HEARTBEAT_S = 30.0  #: how often a holder refreshes its claims
STALE_AFTER_S = 600.0  #: a claim from another host whose heartbeat is older than this is taken again
#: A claim file still empty this long after its creation belongs to a process that died creating it.
EMPTY_GRACE_S = 10.0


def _stale_after() -> float:
    return float(os.environ.get("CCLOSS_CLAIM_STALE_S", STALE_AFTER_S))


@dataclass
class Claim:
    """A point this process holds; :meth:`release` when it is finished (done or failed)."""

    path: Path
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def record(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token, "heartbeat": time.time()}

    def refresh(self) -> None:
        if (holder(self.path) or {}).get("token") == self.token:
            _write_replacing(self.path, self.record())

    def release(self) -> None:
        if (holder(self.path) or {}).get("token") == self.token:
            self.path.unlink(missing_ok=True)


def holder(path: Path) -> dict | None:
    """What a claim file says (host, pid, token, heartbeat); ``{}`` for an empty or unreadable one,
    None when there is no claim."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def is_stale(path: Path, info: dict) -> bool:
    """Whether the process that holds the claim ``info`` (read from ``path``) is gone."""
    if not info:  # empty or garbled: its writer died while creating it, or is writing it now
        try:
            return time.time() - path.stat().st_mtime > EMPTY_GRACE_S
        except FileNotFoundError:
            return True
    if info.get("host") == socket.gethostname():
        return not _pid_alive(int(info.get("pid", -1)))
    return time.time() - float(info.get("heartbeat", 0)) > _stale_after()


def _write_replacing(path: Path, record: dict) -> None:
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def try_claim(point_dir: Path) -> Claim | None:
    """Claim the point in ``point_dir`` (created if missing): the Claim, or None when a live process
    holds it."""
    point_dir.mkdir(parents=True, exist_ok=True)
    claim = Claim(point_dir / CLAIM_FILE)
    try:
        fd = os.open(claim.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        info = holder(claim.path)
        if info is None:  # released in the meantime: try once more
            return try_claim(point_dir) if not claim.path.exists() else None
        return _take_over(claim) if is_stale(claim.path, info) else None
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(claim.record()))
    return claim


def _take_over(claim: Claim) -> Claim | None:
    """Replace a stale claim with ``claim``, under the exclusive takeover file; None when another
    process is taking it over, or took it over first."""
    lock = claim.path.with_name(CLAIM_FILE + ".takeover")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        with contextlib.suppress(FileNotFoundError):
            if time.time() - lock.stat().st_mtime > EMPTY_GRACE_S:  # its taker died mid-takeover
                lock.unlink()
        return None
    try:
        os.close(fd)
        info = holder(claim.path)
        if info is not None and not is_stale(claim.path, info):  # taken over by another process meanwhile
            return None
        _write_replacing(claim.path, claim.record())
        return claim
    finally:
        lock.unlink(missing_ok=True)


class Heartbeat:
    """Refreshes the claims it holds every ``interval`` seconds from a daemon thread."""

    def __init__(self, interval: float = HEARTBEAT_S) -> None:
        self.claims: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            for claim in self.claims.values():
                claim.release()
            self.claims.clear()

    def hold(self, name: str, claim: Claim) -> None:
        with self._lock:
            self.claims[name] = claim

    def release(self, name: str) -> None:
        with self._lock:
            claim = self.claims.pop(name, None)
        if claim is not None:
            claim.release()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with self._lock:
                for claim in self.claims.values():
                    with contextlib.suppress(OSError):  # a shared folder that hiccups: the next beat tries again
                        claim.refresh()
