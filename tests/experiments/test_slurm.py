"""A sweep as a SLURM job array on a real single-node cluster (issue 24 item 3): 4 points, one per task;
one task is requeued mid-point (``scontrol requeue``) and released at once; every point ends done
exactly once, and the report equals that of one sweep process on this machine.

The cluster is started by ``experiments/slurm/local_cluster.sh`` (slurm-wlm and munge; installed with
apt-get when missing and root) and stopped in a finalizer. Each point trains ccloss on ``digits`` for
one epoch at width 0.125 through a small notebook with notebook 02's sweep contract.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest

from experiments.files import read_json

from .test_sweep import ROOT, make_standin_notebook, write_sweep

CLUSTER = ROOT / "experiments" / "slurm" / "local_cluster.sh"
SBATCH = ROOT / "experiments" / "slurm" / "sweep_array.sbatch"

PARAMETERS = """dataset = "digits"  # dataset
width_mult = 0.125  # width
losses = ["cc"]  # losses
lam = None  # CC-Loss weight
batch_size = 64  # batch size
epochs = 1  # epochs
seeds = [0]  # seeds
device = "cpu"  # device
out_dir = "runs/tiny"  # folder of the run directories"""

BODY = """import os
import time
from pathlib import Path

from ccloss import TrainConfig, fit

# the victim's first attempt under SLURM lingers, so that the requeue always lands mid-point
if os.environ.get("SLURM_ARRAY_TASK_ID") and os.environ.get("SLURM_RESTART_COUNT", "0") == "0":
    if lam == 0.1 and seeds == [1]:
        time.sleep(60)

for loss in losses:
    for seed in seeds:
        config = TrainConfig(dataset=dataset, width_mult=width_mult, loss=loss, lam=lam, batch_size=batch_size,
                             epochs=epochs, seed=seed, device=device, out=str(Path(out_dir) / f"{loss}_seed{seed}"),
                             resume=True, quiet=True)
        fit(config)"""


def run(*command, env=None, timeout=120, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    if check:
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    if shutil.which("sbatch") is None and os.geteuid() != 0:
        pytest.skip("needs SLURM: slurm-wlm and munge are not installed and this user is not root to install them")
    folder = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "CLUSTER_DIR": str(folder), "SLURM_CONF": str(folder / "slurm.conf")}
    request.addfinalizer(lambda: run(str(CLUSTER), "stop", env=env, check=False))
    run(str(CLUSTER), "start", env=env, timeout=300)
    return env


def squeue(env, job: str) -> dict:
    """Task id -> state (R, PD, CG ...) of the array's tasks still known to squeue."""
    lines = run("squeue", "-h", "-r", "-j", job, "-o", "%i %t", env=env).stdout.split("\n")
    return dict(line.split() for line in lines if line.strip())


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_a_job_array_with_a_requeued_task_runs_every_point_once(cluster, tmp_path):
    started = time.time()
    notebook = make_standin_notebook(tmp_path / "tiny.ipynb", PARAMETERS, BODY)
    path = write_sweep(tmp_path, notebook, name="tiny", grid={"lam": [0.0, 0.1]}, seeds=[0, 1])
    out, env = tmp_path / "runs", {**cluster, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    sweep_dir = out / "tiny"
    submitted = run("sbatch", "--parsable", "--array=0-3", "--cpus-per-task=1", f"--output={tmp_path}/slurm-%A_%a.out",
                    str(SBATCH), str(path), str(out), env=env)  # fmt: skip
    job = submitted.stdout.strip().split(";")[0]
    victim = sweep_dir / "lam=0.1,seed=1"  # task 3: it starts last, after the first tasks
    wait_for(lambda: (victim / "events.log").exists(), 180, "task 3 to start its point")
    run("scontrol", "requeue", f"{job}_3", env=env)
    wait_for(lambda: squeue(env, job).get(f"{job}_3") == "PD", 60, "task 3 to be pending again")
    run("scontrol", "update", f"JobId={job}_3", "StartTime=now", env=env)
    wait_for(lambda: not squeue(env, job), 240, "every task to end")

    events = {p.name: (p / "events.log").read_text().split("\n") for p in sweep_dir.iterdir() if p.is_dir()}
    assert len(events) == 4
    for name, lines in events.items():
        assert sum(line.endswith(" complete") for line in lines) == 1, (name, lines)
    assert sum(line.endswith(" start") for line in events[victim.name]) == 2  # cancelled mid-point, then resumed
    assert read_json(victim / "point.json")["attempts"] == 2

    alone = run(sys.executable, "-m", "experiments", "sweep", str(path), "--out", str(tmp_path / "alone"),
                "--jobs", "2", "--report", env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)  # fmt: skip
    assert "4 run, 0 already complete, 0 failed" in alone.stdout
    run(sys.executable, "-m", "experiments", "report", str(sweep_dir))
    assert (sweep_dir / "report.csv").read_text() == (tmp_path / "alone" / "tiny" / "report.csv").read_text()
    print(f"measured: {time.time() - started:.1f} s")
