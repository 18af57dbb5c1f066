"""The "Your turn" exercises: copies regenerate byte-identical, solutions pass their checks, and the
unsolved stubs fail them."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
import pytest

from tools.exercises import EXERCISE_DIR, NOTEBOOK_DIR, exercise_copy, solution_cells, write_exercises

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
WITH_EXERCISES = [path.name for path in NOTEBOOKS if not path.name.startswith("00_")]  # every lesson
#: The cell after an exercise calls its notebook's check: ``nb01.check_d_intra(my_d_intra, ...)``.
CHECK_CALL = re.compile(r"\bnb\d\d\.check_\w+\(")
sys.path.insert(0, str(NOTEBOOK_DIR))  # the notebooks import their checks from their own folder
from exercise_checks import not_done  # noqa: E402


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def test_copies_regenerate_byte_identical(tmp_path):
    written = write_exercises(NOTEBOOK_DIR, tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in EXERCISE_DIR.glob("*.ipynb")), (
        "notebooks/exercises/ is out of step with the notebooks: run `make exercises`"
    )
    for path in written:
        committed = (EXERCISE_DIR / path.name).read_bytes()
        assert path.read_bytes() == committed, f"{path.name}: regenerate with `make exercises`"


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_each_notebook_has_two_to_four_exercises_with_checks(name):
    nb = _read(NOTEBOOK_DIR / name)
    cells = solution_cells(nb)
    assert 2 <= len(cells) <= 4, f"{name}: {len(cells)} exercises"
    for i in cells:
        following = nb.cells[i + 1]
        assert following.cell_type == "code" and CHECK_CALL.search(following.source), f"{name}: no check after {i}"


def _stub_names(source: str) -> dict[str, ast.expr]:
    """The names a stub cell assigns, with the value each gets."""
    assigned = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value] * len(elements)
                for element, value in zip(elements, values):
                    if isinstance(element, ast.Name):
                        assigned[element.id] = value
    return assigned


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_stubs_leave_the_answers_none_so_the_checks_fail(name):
    copy = exercise_copy(_read(NOTEBOOK_DIR / name))
    for i in solution_cells(_read(NOTEBOOK_DIR / name)):
        stub = copy.cells[i].source
        assert "### BEGIN SOLUTION" not in stub and "# YOUR CODE HERE" in stub
        assigned = _stub_names(stub)
        assert assigned, f"{name}: the stub of cell {i} assigns no answer"
        answers = {variable: value for variable, value in assigned.items() if variable.startswith("my_")}
        assert answers, f"{name}: the stub of cell {i} assigns no my_... answer"
        for variable, value in answers.items():
            assert isinstance(value, ast.Constant) and value.value is None, (
                f"{name}: {variable} is not None in the stub"
            )
            assert variable in copy.cells[i + 1].source, f"{name}: the check after cell {i} does not read {variable}"
    with pytest.raises(AssertionError, match="not done yet"):
        not_done("stub", None)


def test_copies_have_no_outputs_and_keep_the_parameters_cell():
    for path in EXERCISE_DIR.glob("*.ipynb"):
        nb = _read(path)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
        assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1, path.name


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_committed_solutions_pass_their_checks(name):
    nb = _read(NOTEBOOK_DIR / name)
    for i in solution_cells(nb):
        texts = "".join(
            o.get("text", "") for o in nb.cells[i + 1].get("outputs", []) if o.get("output_type") == "stream"
        )
        assert "correct" in texts and "✗" not in texts, f"{name}: the check after cell {i} did not pass ({texts!r})"


@pytest.mark.slow
def test_the_unsolved_copy_of_01_fails_every_check(tmp_path):
    """Run notebook 01's exercise copy for real: every check cell must stop with "not done yet"."""
    from nbclient import NotebookClient

    copy = _read(EXERCISE_DIR / "01_method.ipynb")
    for cell in copy.cells:  # skip the slow figures of the copy; the checks do not need them
        if "make_gif" in cell.source and "parameters" in cell.metadata.get("tags", []):
            cell.source = cell.source.replace("make_gif = True", "make_gif = False")
    NotebookClient(copy, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()  # fmt: skip
    checks = [cell for cell in copy.cells if cell.cell_type == "code" and CHECK_CALL.search(cell.source)]
    assert len(checks) == len(solution_cells(_read(NOTEBOOK_DIR / "01_method.ipynb")))
    for cell in checks:
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        assert errors and "not done yet" in errors[0]["evalue"], cell.source


@pytest.mark.parametrize("unfinished", [None, (None, None), (8, None), [None]])
def test_not_done_catches_an_unfinished_answer(unfinished):
    with pytest.raises(AssertionError, match="not done yet"):
        not_done("Your turn", unfinished)


def test_the_copies_colab_badges_open_the_copies():
    for path in EXERCISE_DIR.glob("*.ipynb"):
        links = re.findall(r"colab\.research\.google\.com/github/\S+?\.ipynb", path.read_text())
        assert links and all(f"/notebooks/exercises/{path.name}" in link for link in links), (path.name, links)
