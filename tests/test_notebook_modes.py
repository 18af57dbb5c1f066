"""Notebooks 03 and 05 beyond their default run: the paper-scale sweep files shrunk by `overrides` to a
CPU pass into a temporary folder (check_claims off), and claim cells that only assert under `check_claims`."""

from __future__ import annotations

import ast
import json

import nbformat
import pandas as pd
import pytest
import yaml

from experiments.notebooks import NOTEBOOK_DIR, REPO_ROOT, execute_notebook

#: Overrides that turn a paper-scale sweep into seconds on a CPU (see the notebooks' parameter notes).
TINY = {"dataset": "digits", "epochs": 1, "width_mult": 0.125, "device": "cpu", "amp": False}


def _read(path):
    return nbformat.read(str(path), as_version=4)


def _ungated_asserts(source: str) -> list[str]:
    """The assert statements of a cell that are not inside an `if check_claims:` block."""
    found = []

    def visit(node, gated):
        if isinstance(node, ast.Assert) and not gated:
            found.append(ast.unparse(node)[:80])
        gate = isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "check_claims"
        inside = gated or gate
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(ast.parse(source), False)
    return found


@pytest.mark.parametrize("name", ["04_ablations.ipynb", "06_loss_comparison.ipynb"])
def test_claims_are_asserted_only_under_check_claims(name):
    nb = _read(NOTEBOOK_DIR / name)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert any("check_claims = True" in c for c in code), f"{name}: no check_claims parameter"
    gated = [c for c in code if "if check_claims:" in c]
    assert len(gated) == 1 and "assert " in gated[0], f"{name}: the claims cell must be one `if check_claims:` block"
    for source in code:
        assert _ungated_asserts(source) == [], f"{name}: asserts outside `if check_claims:`"


def test_ungated_asserts_are_found():
    assert _ungated_asserts("assert x\nif check_claims:\n    assert y\n") == ["assert x"]


def _outputs(nb) -> str:
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") or output.get("data", {}).get("text/markdown", ""))
    return "\n".join(t if isinstance(t, str) else "".join(t) for t in texts)


@pytest.mark.slow
def test_04_runs_the_paper_lambda_sweep_shrunk_to_two_cpu_runs(tmp_path):
    """prefix=paper: the lambda sweep runs (2 points); the other paper sweeps have no results and are skipped."""
    repo_figure = REPO_ROOT / "figures" / "04_lambda.png"
    before = repo_figure.stat().st_mtime_ns if repo_figure.exists() else None
    parameters = {
        "prefix": "paper", "run_sweeps": ["lambda"], "check_claims": False, "jobs": 2,
        "runs_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "none"),
        "figures_dir": str(tmp_path / "figures"), "overrides": {**TINY, "seeds": [0], "lam": [0.0, 1.0]},
    }  # fmt: skip
    output = execute_notebook(NOTEBOOK_DIR / "04_ablations.ipynb", tmp_path / "04_out.ipynb", parameters)
    sweep_dir = tmp_path / "runs" / "paper_lambda"
    spec = json.loads((sweep_dir / "sweep.json").read_text())
    assert [p["name"] for p in spec["expanded"]] == ["dataset=digits,lam=0,seed=0", "dataset=digits,lam=1,seed=0"]
    for point in spec["expanded"]:
        config = json.loads((sweep_dir / point["name"] / "config.json").read_text())
        setting = (config["dataset"], config["epochs"], config["width_mult"], config["device"])
        assert setting == ("digits", 1, 0.125, "cpu"), setting
        assert config["lam"] == point["values"]["lam"] and config["backbone"] == "vgg16"  # the paper file's backbone
    assert "| dataset | lam | n |" in (sweep_dir / "report.md").read_text()  # written by the notebook
    assert (tmp_path / "figures" / "04_lambda.png").exists()
    assert not (tmp_path / "figures" / "04_batch_size.png").exists()  # not run, no results: skipped
    text = _outputs(_read(output))
    assert "batch_size: no finished results of paper_batch_size.yaml" in text and "forms: no paper_forms.yaml" in text
    assert "all claims hold" not in text
    assert (repo_figure.stat().st_mtime_ns if repo_figure.exists() else None) == before  # the repository's figures/


@pytest.mark.slow
def test_06_runs_the_paper_table_shrunk_to_three_cpu_runs(tmp_path):
    """The paper's table-1 sweep file with its points cut to CE and CC-Loss (overrides cannot drop points),
    their seeds cut to one and two, and the overrides making each run a one-epoch digits run on the CPU;
    the CAM sweep the notebook reads beside it cut to its CE+CAM point, shrunk by the same overrides."""
    sweep = yaml.safe_load((REPO_ROOT / "sweeps" / "paper_table1_losses.yaml").read_text())
    sweep["points"] = [{**p, "seeds": [0] if p["loss"] == "ce" else [0, 1]} for p in sweep["points"]
                       if p["loss"] in ("ce", "cc")]  # fmt: skip
    sweep_file = tmp_path / "paper_table1_losses.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep, sort_keys=False))
    cam_sweep = yaml.safe_load((REPO_ROOT / "sweeps" / "paper_cam.yaml").read_text())
    cam_sweep["points"], cam_sweep["seeds"] = [{"loss": "ce", "cam": True}], [0]  # its CE+CAM row only
    cam_sweep_file = tmp_path / "paper_cam.yaml"
    cam_sweep_file.write_text(yaml.safe_dump(cam_sweep, sort_keys=False))
    parameters = {
        "sweep_file": str(sweep_file), "cam_sweep_file": str(cam_sweep_file), "run": True, "check_claims": False,
        "jobs": 2,
        "runs_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "none"),
        "figures_dir": str(tmp_path / "figures"), "overrides": {**TINY, "backbone": "resnet18"},
    }  # fmt: skip
    output = execute_notebook(NOTEBOOK_DIR / "06_loss_comparison.ipynb", tmp_path / "06_out.ipynb", parameters)
    sweep_dir = tmp_path / "runs" / "paper_table1_losses"
    n = pd.read_csv(sweep_dir / "report.csv").set_index("loss")["n"].to_dict()
    assert n == {"ce": 1, "cc": 2}  # the points' own seeds
    cam_point = tmp_path / "runs" / "paper_cam" / "loss=ce,cam=true,backbone=resnet18,dataset=digits,seed=0"
    assert json.loads((cam_point / "config.json").read_text())["epochs"] == 1  # the CAM sweep, shrunk the same way
    assert (tmp_path / "figures" / "06_losses.png").exists()
    text = _outputs(_read(output))
    assert "left out: ['asoftmax', 'fical', 'focal', 'ical', 'mcloss']" in text
    assert "all claims hold" not in text
