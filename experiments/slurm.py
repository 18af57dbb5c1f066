"""Several machines: a sweep as a SLURM job array, one point per task, submitted with submitit.

``python -m experiments sweep FILE --slurm`` submits one task per point (submitit's ``map_array``);
task i runs ``run_sweep(..., point_index=i)``, i.e. what ``--point $SLURM_ARRAY_TASK_ID`` runs in the
plain script ``experiments/slurm/sweep_array.sbatch``. Where ``sbatch`` is missing, submitit's local
executor runs the tasks as processes of this machine (laptops, tests). Preemption or a time limit:
submitit requeues the task (:meth:`PointTask.checkpoint`) and the point resumes from its checkpoint;
a point already complete is skipped, and the point's file lock keeps two tasks off one point. The
scheduler is SLURM's; nothing here claims, heartbeats or takes over.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .notebooks import REPO_ROOT
from .sweep import Sweep, run_sweep

__all__ = ["PointTask", "submit_array"]


class PointTask:
    """One task of the array: the ``index``-th point of ``sweep`` into ``out`` (picklable for submitit)."""

    def __init__(self, sweep: Sweep, out: str):
        self.sweep, self.out = sweep, out

    def __call__(self, index: int) -> str:
        result = run_sweep(self.sweep, self.out, point_index=index)
        if not result.ok:
            raise RuntimeError(result.summary())
        return result.summary()

    def checkpoint(self, index: int):
        """submitit calls this on preemption or timeout: requeue the same task (it resumes)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, index)


def submit_array(
    sweep: Sweep, out: str | os.PathLike = "runs", options: dict | None = None,
    log: Callable[[str], None] = print, cluster: str | None = None,
) -> list:  # fmt: skip
    """Submit every point of ``sweep`` as one array (the points not complete yet run, the others are
    skipped by their task); ``options`` are submitit parameters (``slurm_partition``, ``timeout_min``,
    ``gpus_per_node`` ...). Returns submitit's jobs; logs go to ``out/<name>/slurm/``."""
    import submitit

    points = sweep.expand()
    folder = Path(out).resolve() / sweep.name / "slurm"
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    parameters = {"timeout_min": 60, "cpus_per_task": 2, "name": f"sweep-{sweep.name}"}
    if executor.cluster == "slurm":
        parameters.update(slurm_setup=[f"export PYTHONPATH={REPO_ROOT}:$PYTHONPATH", f"cd {REPO_ROOT}"])
    executor.update_parameters(**{**parameters, **(options or {})})
    jobs = executor.map_array(PointTask(sweep, str(Path(out).resolve())), list(range(len(points))))
    log(f"{sweep.name}: {len(points)} point(s) submitted to {executor.cluster} (logs: {folder})")
    return jobs
