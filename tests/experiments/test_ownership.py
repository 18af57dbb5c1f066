"""A sweep owns its points' processes (issue 26 item 1): SIGKILL or SIGTERM of a running sweep leaves no
process behind, a rerun at once finishes every point, and every point completes exactly once (its
events.log has one ``complete``; the stand-in notebook appends one line per kernel run to attempts.txt).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.points import SWEEP_ENV

from .test_sweep import ROOT, make_standin_notebook, write_sweep

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")


def live_processes(sweep_dir: Path) -> list[int]:
    """Pids of live processes (point processes, kernels) whose environment names a point of ``sweep_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        prefix = f"{SWEEP_ENV}={sweep_dir}".encode()
        if state != "Z" and any(item.startswith(prefix) for item in environ):
            found.append(int(entry.name))
    return found


def completions(point_dir: Path) -> int:
    return sum(line.endswith(" complete") for line in (point_dir / "events.log").read_text().splitlines())


def kernel_runs(point_dir: Path) -> int:
    return sum(len(f.read_text().split()) for f in point_dir.glob("*/attempts.txt"))


def start_sweep(path: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "experiments", "sweep", str(path), "--out", str(out), "--jobs", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def wait_until_points_run(sweep_dir: Path, process: subprocess.Popen, count: int) -> None:
    deadline = time.time() + 60
    while len(list(sweep_dir.glob("*/*/attempts.txt"))) < count:
        assert process.poll() is None, process.stdout.read().decode()
        assert time.time() < deadline, "the sweep never started its points"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_sweep_leaves_no_process_and_a_rerun_runs_each_point_once(tmp_path, signum):
    started = time.time()
    notebook = make_standin_notebook(tmp_path / "standin.ipynb")
    path = write_sweep(tmp_path, notebook, fixed={"sleep_s": 20.0}, grid={"lam": [0.0, 1.0]}, seeds=[0])
    out, sweep_dir = tmp_path / "runs", tmp_path / "runs" / "demo"
    process = start_sweep(path, out)
    wait_until_points_run(sweep_dir, process, 2)
    os.kill(process.pid, signum)  # the sweep only: its points are in sessions of their own
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == (-9 if signum == signal.SIGKILL else 143), output
    if signum == signal.SIGTERM:
        assert "2 interrupted (rerun to resume)" in output
    deadline = time.time() + 5  # SIGKILL: the death signals are delivered as the sweep exits
    while live_processes(sweep_dir) and time.time() < deadline:
        time.sleep(0.05)
    assert live_processes(sweep_dir) == []
    assert not list(sweep_dir.glob("*/metrics.json"))  # no point finished after its sweep died

    (sweep_dir / "HEALED").touch()  # the stand-in's switch: no sleep on the rerun
    rerun = subprocess.run(
        [sys.executable, "-m", "experiments", "sweep", str(path), "--out", str(out), "--jobs", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for name in ("lam=0,seed=0", "lam=1,seed=0"):
        assert completions(sweep_dir / name) == 1
        assert kernel_runs(sweep_dir / name) == 2  # the killed run, then the rerun's: never two at once
    assert live_processes(sweep_dir) == []
    print(f"measured: {time.time() - started:.1f} s")


def test_submitit_local_executor_runs_one_point_per_task(tmp_path):
    """``--slurm`` on a laptop: submitit's local executor runs the array's tasks as local processes."""
    from experiments.slurm import submit_array
    from experiments.sweep import load_sweep

    notebook = make_standin_notebook(tmp_path / "standin.ipynb")
    sweep = load_sweep(write_sweep(tmp_path, notebook, grid={"lam": [0.0, 1.0]}, seeds=[0]))
    jobs = submit_array(sweep, tmp_path / "runs", options={"timeout_min": 5}, log=lambda m: None, cluster="local")
    summaries = [job.result() for job in jobs]
    assert [s.splitlines()[0].split(":")[1].strip().split(",")[0] for s in summaries] == ["1 run", "1 run"]
    for name in ("lam=0,seed=0", "lam=1,seed=0"):
        assert completions(tmp_path / "runs" / "demo" / name) == 1
    assert len(list((tmp_path / "runs" / "demo" / "slurm").glob("*_log.out"))) == 2


def test_a_point_another_process_holds_is_waited_for_then_run(tmp_path):
    """The documented rule: a locked point is left to its holder; the sweep runs the others, waits for the
    lock, and then runs the point (or skips it, had the holder finished it)."""
    from filelock import FileLock

    from experiments.points import LOCK_FILE

    notebook = make_standin_notebook(tmp_path / "standin.ipynb")
    path = write_sweep(tmp_path, notebook, grid={"lam": [0.0, 1.0]}, seeds=[0])
    held = tmp_path / "runs" / "demo" / "lam=1,seed=0"
    held.mkdir(parents=True)
    lock = FileLock(str(held / LOCK_FILE))
    lock.acquire(timeout=0)
    process = start_sweep(path, tmp_path / "runs")
    try:
        wait_for_line = time.time() + 60
        while not (tmp_path / "runs" / "demo" / "lam=0,seed=0" / "metrics.json").exists():
            assert time.time() < wait_for_line and process.poll() is None
            time.sleep(0.1)
        time.sleep(3 * 2.0)  # a few of the sweep's polls while the lock is held: the point does not start
        assert not (held / "events.log").exists()
    finally:
        lock.release()
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 0, output
    assert "1 point(s) held by another live process: lam=1,seed=0; waiting" in output
    assert completions(held) == 1 and completions(held.parent / "lam=0,seed=0") == 1
