"""The learner's copies of the notebooks (``notebooks/exercises/``), generated from the solutions.

A notebook's "Your turn" cells are tagged ``solution`` and hold the answer between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` (the convention of nbgrader, whose ClearSolutions
preprocessor does the clearing). The copy keeps every other cell, clears all outputs, and replaces
each answer by ``# YOUR CODE HERE``, so the check cell after it fails until the learner answers.
``python -m tools.exercises`` (``make exercises``) rewrites the copies; a test fails when the
committed ones differ.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

from ccloss.paths import repo_root
from experiments.files import atomic_write

__all__ = ["NOTEBOOK_DIR", "EXERCISE_DIR", "SOLUTION_TAG", "solution_cells", "exercise_copy", "write_exercises"]

NOTEBOOK_DIR = repo_root() / "notebooks"
EXERCISE_DIR = NOTEBOOK_DIR / "exercises"
SOLUTION_TAG = "solution"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
#: A Colab link to a solution notebook; the copies' badges must open the copy itself.
COLAB_NOTEBOOK = re.compile(
    r"(colab\.research\.google\.com/github/[^/\s]+/[^/\s]+/blob/[^/\s]+/notebooks/)(?!exercises/)"
)


def solution_cells(nb: nbformat.NotebookNode) -> list[int]:
    """Indices of the cells tagged ``solution``; each must hold the begin and end markers."""
    indices = [i for i, c in enumerate(nb.cells) if SOLUTION_TAG in c.get("metadata", {}).get("tags", [])]
    for i in indices:
        if BEGIN not in nb.cells[i].source or END not in nb.cells[i].source:
            raise ValueError(f"cell {i} is tagged {SOLUTION_TAG!r} but lacks {BEGIN!r} ... {END!r}")
    return indices


def exercise_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` with its answers cleared and no outputs."""
    from nbgrader.preprocessors import ClearSolutions

    out = copy.deepcopy(nb)
    clear = ClearSolutions(
        code_stub={"python": "# YOUR CODE HERE"}, text_stub="*Your answer here.*", enforce_metadata=False
    )
    for i in solution_cells(out):
        out.cells[i] = clear.preprocess_cell(out.cells[i], {"language": "python"}, i)[0]
    for cell in out.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        elif cell.cell_type == "markdown":
            cell.source = COLAB_NOTEBOOK.sub(r"\1exercises/", cell.source)
    out.metadata.pop("papermill", None)
    return out


def write_exercises(notebook_dir: Path = NOTEBOOK_DIR, out_dir: Path | None = None) -> list[Path]:
    """Write the exercise copy of every notebook with solution cells; returns the paths written."""
    out_dir = Path(out_dir) if out_dir is not None else Path(notebook_dir) / "exercises"
    written = []
    for path in sorted(Path(notebook_dir).glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        if not solution_cells(nb):
            continue
        text = nbformat.writes(exercise_copy(nb)) + "\n"
        target = out_dir / path.name
        written.append(atomic_write(target, lambda handle, text=text: handle.write(text)))
    return written


if __name__ == "__main__":
    for written_path in write_exercises():
        print(written_path)
