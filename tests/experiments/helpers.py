"""Builders shared by the experiment tests: a finished (or unfinished) run directory made by hand."""

import json
from pathlib import Path


def fake_run(path, loss, seed, acc, ratio, status="complete", cam=True, collapsed=None):
    path.mkdir(parents=True)
    config = {
        "dataset": "cifar100",
        "backbone": "resnet18",
        "width_mult": 1.0,
        "cam": cam,
        "loss": loss,
        "lam": None,
        "form": None,
        "group_size": None,
        "batch_size": 32,
        "epochs": 2,
        "seed": seed,
        "loss_params": {},
    }
    (path / "config.json").write_text(json.dumps(config))
    final = {"test_acc": acc, "best_test_acc": acc, "test_intra_inter": ratio} if status == "complete" else None
    if final is not None and collapsed is not None:
        final["test_attention_collapsed"] = collapsed
    (path / "metrics.json").write_text(json.dumps({"status": status, "history": [], "final": final}))
    return path


def write_json_file(path: Path, data) -> None:
    """The package's atomic JSON writer, with the folders made first."""
    from experiments.files import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data)


def study_folder(tmp_path: Path, runs: list[dict], final_of, name: str = "study") -> Path:
    """A study's sweep folder, one labelled point per run ({label, dataset, seed, ...}): ``final_of(run)``
    gives its metrics.json ``final`` (None: a failed point)."""
    folder = tmp_path / name
    expanded = []
    for run in runs:
        values = {"label": run["label"], "dataset": run["dataset"], "seed": run["seed"]}
        point = f"label={run['label']},dataset={run['dataset']},seed={run['seed']}"
        expanded.append({"name": point, "values": values, "parameters": {}})
        final = final_of(run)
        if final is None:
            write_json_file(folder / point / "point.json", {"status": "failed", "error": "loss became nan"})
        else:
            write_json_file(folder / point / "metrics.json", {"status": "complete", "history": [], "final": final})
    write_json_file(folder / "sweep.json", {"name": name, "expanded": expanded})
    return folder


def experiments_cli(*args):
    """``python -m experiments ARGS`` in a subprocess from the repository root, its output captured."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "experiments", *args], capture_output=True, text=True, cwd=root,
                          env=env, timeout=600)  # fmt: skip
