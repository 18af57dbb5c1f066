"""The notebooks' structure and parameter contracts; 02_train executed through papermill.

Cell outputs are checked by nbval (`pytest notebooks --nbval-lax ...`, see the Makefile); these
tests check what nbval does not: one `parameters` cell of literals that papermill accepts, the
committed metadata, and that 02 runs with overridden parameters into a temporary folder.
"""

import ast
import json
import os

import nbformat
import papermill
import pytest

from experiments.notebooks import NOTEBOOK_DIR, execute_notebook

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

#: The parameters of 02_train.ipynb that the sweeps (ccloss.sweep) and the README rely on.
CONTRACT_02 = {
    "dataset": "mnist5k", "data_dir": "data", "backbone": "resnet18", "width_mult": 0.25, "cam": True,
    "losses": ["ce", "cc_ratio", "cc"], "lam": None, "form": None, "group_size": None, "loss_params": {},
    "batch_size": 32, "epochs": 2, "seeds": [0, 1], "eval_split": "test", "train_options": {},
    "device": "auto", "amp": False, "out_dir": "runs/02_train", "figures_dir": None, "pretrained": None,
    "check_claims": True,
}  # fmt: skip


def _read(path):
    return nbformat.read(str(path), as_version=4)


def _parameter_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]


def _parameter_values(nb):
    """name -> literal value of the notebook's parameters cell (fails on anything but literals)."""
    (cell,) = _parameter_cells(nb)
    values = {}
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), (
            f"parameters cell: only `name = literal` lines, got {ast.unparse(node)!r}"
        )
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def unknown_parameters(notebook, names):
    """The names papermill would not find in the notebook's parameters (papermill only warns)."""
    known = set(papermill.inspect_notebook(str(notebook)))
    return sorted(set(names) - known)


def test_there_are_notebooks():
    names = [p.name for p in NOTEBOOKS]
    assert {"01_method.ipynb", "02_train.ipynb", "05_embeddings.ipynb"} <= set(names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_structure(path):
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    assert "widgets" not in nb.metadata, "widget state must be stripped"
    assert len(_parameter_cells(nb)) == 1, "exactly one cell tagged `parameters`"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert "widgets" not in cell.metadata
        if cell.outputs:
            assert cell.execution_count is not None, f"cell {index} has outputs but no execution count"
        for output in cell.outputs:
            assert "application/vnd.jupyter.widget-view+json" not in output.get("data", {}), (
                f"widget output in cell {index}"
            )
            assert output.get("output_type") != "error", f"cell {index} stored an error"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_are_literals_papermill_accepts(path):
    nb = _read(path)
    values = _parameter_values(nb)
    assert values, "the parameters cell is empty"
    (cell,) = _parameter_cells(nb)
    for line in cell.source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert "#" in line, f"every parameter needs a comment: {line!r}"
    inspected = papermill.inspect_notebook(str(path))
    assert set(values) <= set(inspected), f"papermill does not see {set(values) - set(inspected)}"
    assert unknown_parameters(path, values) == []


def test_unknown_parameter_names_are_detected():
    path = NOTEBOOK_DIR / "02_train.ipynb"
    assert unknown_parameters(path, ["epochs", "seeds", "epoch", "lambda"]) == ["epoch", "lambda"]


def test_02_parameter_contract():
    """Names and defaults the sweeps rely on (a rename must be deliberate)."""
    values = _parameter_values(_read(NOTEBOOK_DIR / "02_train.ipynb"))
    for name, default in CONTRACT_02.items():
        assert name in values, f"02_train.ipynb lost its parameter {name!r}"
        assert values[name] == default and type(values[name]) is type(default), (name, values[name])


def test_04_uses_the_run_setting_of_02():
    values_02 = _parameter_values(_read(NOTEBOOK_DIR / "02_train.ipynb"))
    values_04 = _parameter_values(_read(NOTEBOOK_DIR / "05_embeddings.ipynb"))
    shared = set(values_04) & set(values_02)
    assert {"dataset", "data_dir", "backbone", "width_mult", "epochs", "seeds", "out_dir", "device"} <= shared
    assert {name: values_04[name] for name in shared} == {name: values_02[name] for name in shared}


def test_nbval_checked_cells_exist():
    """Each of the tutorial notebooks checks some deterministic output with nbval."""
    for name in ("01_method.ipynb", "02_train.ipynb", "05_embeddings.ipynb"):
        nb = _read(NOTEBOOK_DIR / name)
        checked = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# NBVAL_CHECK_OUTPUT")]
        assert checked and all(c.outputs for c in checked), name


@pytest.mark.slow
def test_02_runs_with_overridden_parameters(tmp_path):
    out_dir = tmp_path / "runs"
    parameters = {
        "dataset": "digits",
        "losses": ["ce", "cc"],
        "seeds": [0],
        "epochs": 1,
        "width_mult": 0.125,
        "out_dir": str(out_dir),
        "device": "cpu",
    }
    assert unknown_parameters(NOTEBOOK_DIR / "02_train.ipynb", parameters) == []
    output = execute_notebook(NOTEBOOK_DIR / "02_train.ipynb", tmp_path / "02_out.ipynb", parameters)
    for loss in ("ce", "cc"):
        run = out_dir / f"{loss}_seed0"
        metrics = json.loads((run / "metrics.json").read_text())
        config = json.loads((run / "config.json").read_text())
        assert metrics["status"] == "complete" and len(metrics["history"]) == 1
        assert (config["loss"], config["epochs"], config["width_mult"], config["seed"]) == (loss, 1, 0.125, 0)
        assert config["dataset"] == "digits"
        assert config["lam"] is None  # lam = None in the notebook: the loss's own default applies
        assert (run / "checkpoint.pt").exists()
    summary = (out_dir / "summary.md").read_text()
    assert "| loss |" in summary and "| ce+CAM |" in summary and "| cc |" in summary
    assert (out_dir / "summary.csv").read_text().startswith("loss,")
    assert (out_dir / "figures" / "02_training_curves.png").exists()  # not the repository's figures/
    executed = _read(output)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "epochs = 1" in injected[0].source


@pytest.mark.skipif(os.name != "posix", reason="IPC transport (Unix sockets) is POSIX only; TCP elsewhere")
def test_execute_notebook_talks_to_its_kernel_over_unix_sockets(tmp_path):
    """No TCP port opened, and no "running over TCP without encryption" warning in `make run`'s output."""
    cell = "from ipykernel.kernelapp import IPKernelApp\nprint(IPKernelApp.instance().transport)"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)]), str(tmp_path / "in.ipynb"))
    output = execute_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb")
    assert nbformat.read(str(output), as_version=4).cells[0].outputs[0]["text"] == "ipc\n"
