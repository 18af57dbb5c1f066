"""`python -m ccloss train` under torchrun: 2 CPU processes (gloo), end to end.

- A 2-process run finishes and writes exactly one run directory (rank 0 alone writes it).
- Killing every process mid-epoch, then ``--resume``, ends with exactly the metrics and weights of
  the uninterrupted run (timings aside). OMP_NUM_THREADS=1 in both runs; the training loop also
  sets ``cores // LOCAL_WORLD_SIZE`` threads per process on the CPU, the same number in both.
- An error raised on rank 0 only (the run directory already holds a run) reaches every rank:
  all exit at once, nothing hangs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import built_once, without_timings

ROOT = Path(__file__).resolve().parents[2]
NPROC = 2
TRAIN_ARGS = [
    "--dataset",
    "digits",
    "--width-mult",
    "0.125",
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--device",
    "cpu",
    "--quiet",
]
RUN_FILES = {"config.json", "metrics.json", "checkpoint.pt", "checkpoint.prev.pt"}
RUN_TIMEOUT_S = 300  # a 2-epoch run takes ~20-60 s on 2 busy cores

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find torchrun's workers"),
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available"),
]


def _env() -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    }
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _command(out: Path, *extra: str) -> list[str]:
    # `python -m torch.distributed.run` is the `torchrun` script of this interpreter's torch
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(NPROC),
        "-m",
        "ccloss",
        "train",
        *TRAIN_ARGS,
        "--out",
        str(out),
        *extra,
    ]


def _torchrun(out: Path, *extra: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(out, *extra), cwd=out.parent, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def _check_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"torchrun exited with {result.returncode}\n{result.stdout}\n{result.stderr}"


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _kill_all(proc: subprocess.Popen) -> list[int]:
    """SIGKILL torchrun, its process group and every worker (each worker has a session of its own)."""
    workers = _descendants(proc.pid)
    for pid in [proc.pid, *workers]:
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers), "a worker survived SIGKILL"
    return workers


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ddp_runs")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The two-process run to the end, trained once for every xdist worker (tests.helpers.built_once)."""
    folder = built_once(tmp_path_factory, "ddp-uninterrupted", lambda f: _check_ok(_torchrun(f / "uninterrupted")))
    return folder / "uninterrupted"


def test_two_process_run_writes_one_run_directory(uninterrupted):
    assert sorted(p.name for p in uninterrupted.parent.iterdir()) == ["uninterrupted"]
    assert {p.name for p in uninterrupted.iterdir()} == RUN_FILES  # no temporary files left behind
    metrics = _metrics(uninterrupted)
    assert metrics["status"] == "complete"
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    assert metrics["final"]["epochs"] == 2 and metrics["final"]["test_acc"] == metrics["history"][-1]["test_acc"]
    config = json.loads((uninterrupted / "config.json").read_text())
    assert config["batch_size"] == 16 and config["cc_scope"] == "global" and config["epochs"] == 2
    checkpoint = torch.load(uninterrupted / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert checkpoint["complete"] and checkpoint["epoch"] == 1
    # 1,347 digits, global batch 2 x 16, drop_last: 42 steps per epoch on each rank
    assert checkpoint["step"] == 2 * (1347 // (NPROC * 16))


def test_killed_mid_epoch_then_resumed_equals_uninterrupted(runs, uninterrupted):
    out = runs / "killed"
    log = (runs / "killed.log").open("w")
    proc = subprocess.Popen(
        _command(out), cwd=runs, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        history: list = []
        while not history:  # rank 0 writes metrics.json right after epoch 1's checkpoint
            assert proc.poll() is None, f"torchrun ended early:\n{(runs / 'killed.log').read_text()}"
            assert time.monotonic() < deadline, "epoch 1 did not finish in time"
            time.sleep(0.1)
            with contextlib.suppress(OSError, ValueError):
                history = _metrics(out)["history"]
        # epoch 2 is under way: let it run for a third of an epoch, then kill every process
        time.sleep(history[0]["train_seconds"] / 3)
        assert proc.poll() is None and len(_metrics(out)["history"]) == 1, "the run got past epoch 2 too soon"
    finally:
        workers = _kill_all(proc)
        log.close()
    assert len(workers) == NPROC, f"expected {NPROC} workers under torchrun, found {workers}"
    killed = _metrics(out)
    assert killed["status"] == "running" and len(killed["history"]) == 1
    assert torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)["epoch"] == 0

    _check_ok(_torchrun(out, "--resume"))
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert without_timings(_metrics(out)) == without_timings(_metrics(uninterrupted))
    resumed = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    reference = torch.load(uninterrupted / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert resumed["step"] == reference["step"]
    for name, tensor in reference["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name


def test_error_on_rank0_reaches_every_rank(uninterrupted):
    """The run directory holds a run (no --resume): rank 0 refuses, rank 1 gets the same error."""
    result = _torchrun(uninterrupted, timeout=120)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert output.count("already holds a run") >= NPROC, output  # one "error: ..." line per rank
    assert _metrics(uninterrupted)["status"] == "complete"  # untouched
