"""Running sweep points: one point in a process (:func:`run_point`), and the pool of worker processes.

Each point runs its notebook with papermill in a fresh kernel, in a worker process (never a
thread: papermill changes the working directory). With several GPUs each worker gets its own
(``CUDA_VISIBLE_DEVICES``); each gets ``cores // jobs`` CPU threads. A point's folder holds
``point.json`` (parameters, status, error), the executed notebook, the run directory, and last,
atomically, a copy of the run's ``metrics.json``: its presence marks the point done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..runtime.atomic import read_json, write_json
from ..runtime.checkpoint import CONFIG_FILE, METRICS_FILE, is_complete
from .notebooks import REPO_ROOT, NotebookFailed, execute_notebook, notebook_error

__all__ = [
    "POINT_FILE",
    "NOTEBOOK_FILE",
    "RUNNING_NOTEBOOK",
    "SINGULAR",
    "notebook_parameters",
    "notebook_values",
    "run_point",
    "worker_environments",
    "run_processes",
]

POINT_FILE, NOTEBOOK_FILE, RUNNING_NOTEBOOK = "point.json", "notebook.ipynb", "notebook.running.ipynb"
#: A point's singular key -> the notebook's list parameter it fills (one run per point).
SINGULAR = {"loss": "losses", "seed": "seeds"}


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


def run_point(point_dir: str | os.PathLike, log: Callable[[str], None] = print) -> dict:
    """Execute the point described by ``point_dir/point.json``; returns its final record.

    Never raises for a failing notebook: the record says ``status: failed`` with the error.
    """
    point_dir = Path(point_dir).resolve()
    record = read_json(point_dir / POINT_FILE)
    notebook = Path(record["notebook_path"])
    running, final_nb = point_dir / RUNNING_NOTEBOOK, point_dir / NOTEBOOK_FILE
    for stale in (METRICS_FILE, CONFIG_FILE, NOTEBOOK_FILE):
        if (point_dir / stale).exists():
            (point_dir / stale).unlink()
    valid = list(notebook_parameters(notebook))
    parameters = notebook_values(record["parameters"], valid)
    parameters["out_dir"] = str(point_dir)
    if "check_claims" in valid:
        # the notebook's claims are about its default run; a sweep point may legitimately fail them
        # (a lambda that ruins accuracy is a result to report, not an error)
        parameters["check_claims"] = False
    started = time.time()
    record.update(status="running", started=started, error=None, pid=os.getpid())
    write_json(point_dir / POINT_FILE, record)
    error: str | None = None
    try:
        execute_notebook(notebook, running, parameters)  # cwd: the notebook's folder
    except NotebookFailed as failure:
        error = notebook_error(running) or str(failure)
    except Exception as failure:  # papermill itself, a kernel that never started, ...
        error = f"{type(failure).__name__}: {failure}"
    if running.exists():
        os.replace(running, final_nb)
    if error is None:
        runs = sorted(p.parent for p in point_dir.glob(f"*/{METRICS_FILE}"))
        if len(runs) != 1:
            error = (
                f"the notebook finished but wrote {len(runs)} run directories with a metrics.json into "
                f"{point_dir} (expected exactly one)"
            )
        elif not is_complete(runs[0]):
            error = f"the notebook finished but {runs[0].name}/metrics.json is not complete"
        else:
            record["run_dir"] = runs[0].name
    record.update(seconds=time.time() - started, finished=time.time())
    if error is not None:
        record.update(status="failed", error=error)
        write_json(point_dir / POINT_FILE, record)
        return record
    run_dir = point_dir / record["run_dir"]
    if (run_dir / CONFIG_FILE).exists():
        write_json(point_dir / CONFIG_FILE, read_json(run_dir / CONFIG_FILE))
    record["status"] = "complete"
    write_json(point_dir / POINT_FILE, record)
    write_json(point_dir / METRICS_FILE, read_json(run_dir / METRICS_FILE))  # the marker: last, atomic
    return record


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _visible_gpus() -> list[str]:
    """GPU ids for CUDA_VISIBLE_DEVICES (respects an existing CUDA_VISIBLE_DEVICES)."""
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # pragma: no cover - broken CUDA install
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(count)]
    return ids[:count]


def worker_environments(jobs: int, gpus: Sequence[str] | None = None, cores: int | None = None) -> list[dict]:
    """Environment variables for each of ``jobs`` worker slots.

    Several GPUs: slot i gets GPU ``i % len(gpus)`` alone. Threads per slot: ``max(1, cores // jobs)``
    (OMP/MKL), unless OMP_NUM_THREADS is already set by the user.
    """
    cores = cores or _cpu_count()
    threads = str(max(1, cores // max(1, jobs)))
    envs = []
    for slot in range(jobs):
        env: dict[str, str] = {}
        if "OMP_NUM_THREADS" not in os.environ:
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        if gpus and len(gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        envs.append(env)
    return envs


class _Worker:
    """A long-lived point runner process (one per slot): imports once, runs points one by one.

    Protocol: the parent writes a point folder per line on the worker's stdin; the worker answers
    one JSON line on its stdout when the point is finished. Its stderr (kernel warnings, papermill
    messages) goes to ``<sweep>/logs/worker<slot>.log``.
    """

    CODE = "from ccloss.experiments.workers import _worker_main; _worker_main()"

    def __init__(self, slot: int, env: dict, log_dir: Path):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.slot = slot
        self.log_path = log_dir / f"worker{slot}.log"
        self.log = open(self.log_path, "a")  # noqa: SIM115 (open for the worker's life; closed in close())
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            cwd=str(REPO_ROOT),
            text=True,
            bufsize=1,
        )
        self.point = None

    def submit(self, point, point_dir: Path) -> None:
        self.point = point
        self.process.stdin.write(str(point_dir) + "\n")
        self.process.stdin.flush()

    def read_answer(self) -> dict | None:
        """The worker's answer, or None if it died."""
        line = self.process.stdout.readline()
        if not line:
            return None
        try:
            return json.loads(line)
        except ValueError:
            return None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def close(self, kill: bool = False) -> None:
        try:
            if kill:
                self.process.terminate()
            else:
                self.process.stdin.close()
            self.process.wait(timeout=30)
        except (subprocess.TimeoutExpired, OSError):
            self.process.kill()
            self.process.wait()
        self.log.close()


def _worker_main() -> None:
    """Body of a worker process (see :class:`_Worker`)."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # prints from papermill or the runner go to the log, not into the protocol
    for line in sys.stdin:
        point_dir = line.strip()
        if not point_dir:
            continue
        try:
            record = run_point(point_dir)
        except Exception as error:  # a bug of the runner itself: record it on the point
            record = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
            try:
                previous = read_json(Path(point_dir) / POINT_FILE)
                previous.update(record)
                write_json(Path(point_dir) / POINT_FILE, previous)
            except (OSError, ValueError):
                pass
        answers.write(json.dumps({"point_dir": point_dir, "status": record.get("status")}) + "\n")


def _record_of(worker: _Worker, point_dir: Path, answer: dict | None) -> dict:
    """The point's record after its worker answered; a dead worker fails the point."""
    try:
        record = read_json(point_dir / POINT_FILE)
    except (OSError, ValueError):
        record = {}
    if answer is None or record.get("status") not in ("complete", "failed"):
        code = worker.process.poll()
        record.update(
            status="failed",
            error=f"the worker process died (exit code {code}) while running this point: {worker.log_tail()}",
        )
        write_json(point_dir / POINT_FILE, record)
    return record


def run_processes(
    sweep_dir: Path, next_point: Callable[[], object | None], jobs: int, on_done: Callable[[object, dict], None]
) -> None:
    """Run the points that ``next_point()`` hands out (until it returns None) in ``jobs`` worker
    processes; ``on_done(point, record)`` after each. A worker that dies fails its point and is
    replaced; the others go on."""
    import select

    envs = worker_environments(jobs, _visible_gpus() if jobs > 1 else [])
    log_dir = sweep_dir / "logs"
    workers = [_Worker(slot, envs[slot], log_dir) for slot in range(jobs)]
    exhausted = False
    try:
        while True:
            for worker in workers:
                if worker.point is None and not exhausted:
                    point = next_point()
                    if point is None:
                        exhausted = True
                    else:
                        worker.submit(point, sweep_dir / point.name)
            busy = [w for w in workers if w.point is not None]
            if not busy:
                break
            ready, _, _ = select.select([w.process.stdout for w in busy], [], [], 1.0)
            for worker in (w for w in busy if w.process.stdout in ready):
                point, answer = worker.point, worker.read_answer()
                worker.point = None
                on_done(point, _record_of(worker, sweep_dir / point.name, answer))
                if answer is None:  # replace the dead worker
                    worker.close(kill=True)
                    workers[worker.slot] = _Worker(worker.slot, envs[worker.slot], log_dir)
    except BaseException:
        for worker in workers:
            worker.close(kill=True)
        raise
    for worker in workers:
        worker.close()
