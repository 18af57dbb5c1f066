"""`make test` runs the notebooks under pytest-xdist: every cell of every notebook must reach one worker, in
order, or a cell meets a kernel that never ran the cells before it (CI failed that way under pytest 9.2)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _chained_notebook(path: Path, n_cells: int) -> None:
    """Cell k asserts that cells 0..k-1 ran before it, in this kernel."""
    cells = [nbformat.v4.new_code_cell("ran = [0]")]
    for k in range(1, n_cells):
        cells.append(nbformat.v4.new_code_cell(f"assert ran == list(range({k})), ran\nran.append({k})"))
    nbformat.write(nbformat.v4.new_notebook(cells=cells), str(path))


@pytest.mark.slow
def test_cells_of_the_notebooks_run_in_one_worker_in_order(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy(ROOT / "notebooks" / "conftest.py", folder / "conftest.py")
    for name in ("a", "b"):
        _chained_notebook(folder / f"{name}.ipynb", 12)
    other = "import pytest\n\n\n@pytest.mark.parametrize('i', range(20))\ndef test_x(i):\n    pass\n"
    (tmp_path / "test_other.py").write_text(other)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "test_other.py", "notebooks", "--nbval-lax", "--nbval-current-env"]
        + ["-n", "2", "-p", "no:cacheprovider", "-q", "-rA"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "44 passed" in result.stdout


def test_a_notebook_that_reads_another_ones_runs_shares_its_worker():
    spec = importlib.util.spec_from_file_location("notebooks_conftest", ROOT / "notebooks" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # by path: the repository's own conftest.py is already `conftest`
    notebook_scope = module.notebook_scope
    scope = {
        name: notebook_scope(f"notebooks/{name}.ipynb::Cell 3") for name in ("01_method", "02_train", "05_embeddings")
    }
    assert scope["05_embeddings"] == scope["02_train"] != scope["01_method"]
    assert notebook_scope("tests/test_x.py::test_y") == "tests/test_x.py::test_y"
