"""One sweep point in a process of its own: ``python -m experiments.points POINT_DIR PARENT_PID RECORD``.

The point's folder is its identity (one folder per point, named from its settings). This process
takes the point's OS file lock (``POINT_DIR/.lock``, the ``filelock`` library: ``flock``, which the
kernel releases when the holder dies, so no heartbeat or takeover is needed), runs the notebook with
papermill in a fresh kernel, and writes, last and atomically, a copy of the run's ``metrics.json``:
its presence marks the point done. A point whose lock is held exits with :data:`LOCKED` at once.

Ownership (Linux): this process and the notebook's kernel each ask the kernel to SIGKILL them when
their parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), so a sweep killed with ``kill -9`` leaves
nothing running. SIGTERM is forwarded to the kernel once: the training loop stops after its epoch
with a checkpoint, the point is recorded as ``interrupted`` and this process exits 143 (a rerun
resumes it). Under SLURM (``SLURM_JOB_ID`` set) nothing is forwarded: SLURM signals every process of
the job itself, and a second SIGTERM would make the loop stop at once instead of after its epoch.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .files import CONFIG_FILE, METRICS_FILE, POINT_FILE, is_complete, read_json, write_json

__all__ = ["LOCKED", "INTERRUPTED", "SWEEP_ENV", "is_locked", "notebook_parameters", "notebook_values", "run_point"]

LOCK_FILE, EVENTS_FILE = ".lock", "events.log"
NOTEBOOK_FILE, RUNNING_NOTEBOOK = "notebook.ipynb", "notebook.running.ipynb"
LOCKED, INTERRUPTED = 75, 143  #: exit codes: the point's lock is held elsewhere; stopped by SIGTERM (128 + 15)
#: Notebook parameters that do not change a point's result: changing them keeps its folder and checkpoint.
RESULT_FREE = frozenset({"out_dir", "data_dir", "device", "download", "compile", "channels_last", "quiet",
                         "figures_dir", "check_claims"})  # fmt: skip
SWEEP_ENV = "EXPERIMENTS_POINT_DIR"  #: set in a point's processes (and its kernel's): finds them in /proc
#: A point's singular key -> the notebook's list parameter it fills (one run per point).
SINGULAR = {"loss": "losses", "seed": "seeds"}
_PR_SET_PDEATHSIG = 1
_KERNEL_CODE = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform.startswith('linux'): ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)\n"
    "if os.getppid() != int(sys.argv.pop(1)): os._exit(1)\n"
    "del sys.path[0]\n"
    "from ipykernel import kernelapp\n"
    "kernelapp.launch_new_instance()\n"
)  # ipykernel_launcher, preceded by the death signal: the kernel dies with the point's process
_kernels: list[int] = []  #: pids of the kernels this process started
_stopping: list[int] = []  #: signals received


def point_lock(point_dir: str | os.PathLike):
    """The point's lock (a ``filelock.FileLock`` on ``POINT_DIR/.lock``); acquire with ``timeout=0``."""
    from filelock import FileLock

    return FileLock(str(Path(point_dir) / LOCK_FILE))


def is_locked(point_dir: str | os.PathLike) -> bool:
    """True while a live process holds the point (probes the lock: takes it and gives it back at once)."""
    from filelock import Timeout

    if not (Path(point_dir) / LOCK_FILE).exists():
        return False
    lock = point_lock(point_dir)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def die_with_parent(parent_pid: int) -> None:
    """Linux: SIGKILL this process when its parent dies (PR_SET_PDEATHSIG); exit now if it already has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def notebook_parameters(notebook: str | os.PathLike) -> dict:
    """The notebook's ``parameters`` cell as papermill sees it: name -> {default, inferred type, help}."""
    import papermill as pm

    return dict(pm.inspect_notebook(str(notebook)))


def notebook_values(parameters: dict, valid: Sequence[str]) -> dict:
    """Map singular point keys (``loss``, ``seed``) to the notebook's list parameters."""
    out = {}
    for key, value in parameters.items():
        plural = SINGULAR.get(key)
        if plural and key not in valid and plural in valid:
            out[plural] = [value]
        else:
            out[key] = value
    return out


def _owned_kernel_manager():
    """A kernel manager whose kernels die with this process, and whose pids are kept for SIGTERM."""
    from .notebooks import local_kernel_manager

    class OwnedKernelManager(local_kernel_manager()):
        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            for i in range(1, len(cmd) - 1):  # python [-X...] -m ipykernel_launcher -f FILE
                if cmd[i : i + 2] == ["-m", "ipykernel_launcher"]:
                    cmd[i : i + 2] = ["-c", _KERNEL_CODE, str(os.getpid())]
                    break
            return cmd

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            await super()._async_launch_kernel(kernel_cmd, **kw)
            _kernels.append(self.provisioner.pid)

    return OwnedKernelManager


def _on_signal(signum, frame) -> None:
    """First SIGTERM/SIGINT: the kernel's loop stops after its epoch. Second: kill the kernel now."""
    _stopping.append(signum)
    if "SLURM_JOB_ID" in os.environ and len(_stopping) == 1:
        return  # SLURM signals every process of the job itself
    for pid in _kernels:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGTERM if len(_stopping) == 1 else signal.SIGKILL)


def _event(point_dir: Path, text: str) -> None:
    with open(point_dir / EVENTS_FILE, "a") as handle:
        handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {socket.gethostname()} {os.getpid()} {text}\n")


def _execute(notebook: Path, output: Path, parameters: dict) -> str | None:
    """Run the notebook; the error text, or None when it finished."""
    from .notebooks import NotebookFailed, execute_notebook, notebook_error

    try:
        execute_notebook(notebook, output, parameters, kernel_manager_class=_owned_kernel_manager())
    except NotebookFailed as failure:
        return notebook_error(output) or str(failure)
    except Exception as failure:  # papermill itself, a kernel that never started or died, ...
        return f"{type(failure).__name__}: {failure}"
    return None


def _finished_run(point_dir: Path) -> tuple[Path | None, str | None]:
    runs = sorted(p.parent for p in point_dir.glob(f"*/{METRICS_FILE}"))
    if len(runs) != 1:
        return None, f"the notebook finished but wrote {len(runs)} run directories with a metrics.json (expected 1)"
    if not is_complete(runs[0]):
        return None, f"the notebook finished but {runs[0].name}/{METRICS_FILE} is not complete"
    return runs[0], None


def run_point(point_dir: Path, record: dict) -> dict:
    """Execute the point (its lock held by the caller); returns its final record, never raises for
    a failing notebook: the record says ``failed`` (with the error) or ``interrupted``."""
    notebook = Path(record["notebook_path"])
    running, final_nb = point_dir / RUNNING_NOTEBOOK, point_dir / NOTEBOOK_FILE
    for stale in (METRICS_FILE, CONFIG_FILE, NOTEBOOK_FILE):
        (point_dir / stale).unlink(missing_ok=True)
    valid = list(notebook_parameters(notebook))
    parameters = notebook_values(record["parameters"], valid)
    parameters["out_dir"] = str(point_dir)
    if "check_claims" in valid:  # the notebook's claims are about its default run, not a sweep's points
        parameters["check_claims"] = False
    started = time.time()
    record.update(status="running", started=started, error=None, pid=os.getpid(), host=socket.gethostname())
    write_json(point_dir / POINT_FILE, record)
    _event(point_dir, "start")
    error = _execute(notebook, running, parameters)
    if running.exists():
        os.replace(running, final_nb)
    run_dir = None
    if error is None:
        run_dir, error = _finished_run(point_dir)
    record.update(seconds=time.time() - started, finished=time.time())
    if error is not None:
        status = "interrupted" if _stopping else "failed"
        record.update(status=status, error=error)
        write_json(point_dir / POINT_FILE, record)
        _event(point_dir, status)
        return record
    if (run_dir / CONFIG_FILE).exists():
        write_json(point_dir / CONFIG_FILE, read_json(run_dir / CONFIG_FILE))
    record.update(status="complete", run_dir=run_dir.name)
    write_json(point_dir / POINT_FILE, record)
    write_json(point_dir / METRICS_FILE, read_json(run_dir / METRICS_FILE))  # the marker: last, atomic
    _event(point_dir, "complete")
    return record


def _prepared(point_dir: Path, record: dict) -> dict:
    """The record with the attempt counted; a folder of other parameters (unfinished) is emptied first."""
    try:
        previous = read_json(point_dir / POINT_FILE)
    except (OSError, ValueError):
        previous = {}
    before, now = previous.get("parameters") or {}, record["parameters"]
    if previous and any(before.get(k) != now.get(k) for k in (set(before) | set(now)) - RESULT_FREE):
        for child in point_dir.iterdir():  # its run cannot resume: start again
            if child.name != LOCK_FILE:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        previous = {}
    return {**record, "attempts": int(previous.get("attempts", 0)) + 1}


def main(argv: Sequence[str]) -> int:
    """The point process: lock, run, exit 0 (complete), 1 (failed), 143 (interrupted) or 75 (held by another
    process, or finished by one)."""
    from filelock import Timeout

    point_dir, parent_pid, record = Path(argv[0]), int(argv[1]), json.loads(argv[2])
    die_with_parent(parent_pid)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    lock = point_lock(point_dir)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return LOCKED
    with lock:
        if is_complete(point_dir):  # finished by another process since the sweep looked: not ours to run
            return LOCKED
        record = run_point(point_dir, _prepared(point_dir, record))
    return {"complete": 0, "interrupted": INTERRUPTED}.get(record["status"], 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
