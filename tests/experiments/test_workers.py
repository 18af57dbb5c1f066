"""ccloss.experiments.workers: what a sweep point hands its notebook, and how worker processes share the
machine's threads and GPUs. (Running points in workers, failures and killed workers included, is tested
through run_sweep in test_sweep.py.)"""

from pathlib import Path

import pytest

from ccloss.experiments.workers import notebook_parameters, notebook_values, worker_environments

ROOT = Path(__file__).resolve().parents[2]


def test_loss_and_seed_become_the_notebooks_lists():
    valid = ["losses", "seeds", "lam", "out_dir"]
    assert notebook_values({"loss": "cc", "seed": 3, "lam": 1.0}, valid) == {"losses": ["cc"], "seeds": [3], "lam": 1.0}
    # a notebook with singular parameters gets them as they are
    assert notebook_values({"loss": "cc"}, ["loss", "out_dir"]) == {"loss": "cc"}


def test_worker_environments_split_threads_and_gpus(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert worker_environments(1, cores=2) == [{"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}]
    assert worker_environments(2, cores=2) == [{"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}] * 2
    assert worker_environments(4, cores=2)[3]["OMP_NUM_THREADS"] == "1"
    envs = worker_environments(3, gpus=["0", "1", "2", "3"], cores=16)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "2"]
    assert {e["OMP_NUM_THREADS"] for e in envs} == {"5"}
    assert "CUDA_VISIBLE_DEVICES" not in worker_environments(2, gpus=["0"], cores=4)[0]  # one GPU: shared
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's setting wins
    assert worker_environments(2, cores=8) == [{}, {}]


@pytest.mark.parametrize(
    "name, expected",
    [
        (
            "03_ablations.ipynb",
            {
                "sweeps_dir",
                "prefix",
                "run_sweeps",
                "runs_dir",
                "results_dir",
                "jobs",
                "figures_dir",
                "data_dir",
                "overrides",
                "check_claims",
            },
        ),
        (
            "05_loss_comparison.ipynb",
            {"sweep_file", "run", "runs_dir", "results_dir", "jobs", "figures_dir", "overrides", "check_claims"},
        ),
    ],
)
def test_sweep_notebooks_parameters_parse(name, expected):
    path = ROOT / "notebooks" / name
    assert set(notebook_parameters(path)) == expected
