"""Numbers in a notebook's prose come from its runs (issue 25): every decimal number, and every number
given as a percentage or in points, that a Markdown cell states must appear in the notebook's outputs (or,
for a setting such as a width of 0.25, in its code). Prose written before a rerun that moved the numbers
fails here."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from ccloss.measures import KNN_K, SEPARATED_ABOVE

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: 0.7143, -0.37, 97 %, 12 points; not 2020, not "notebook 03", not list items.
NUMBER = re.compile(r"(?<![\w.^])-?\d+\.\d+(?![\w.])|(?<![\w.^])\d+(?=\s?(?:%|points?\b))")


def prose_numbers(markdown: str) -> list[str]:
    """The numbers a Markdown cell states outside code, maths and link targets."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    text = re.sub(r"`[^`]*`|\$\$.*?\$\$|\$[^$]*\$", "", text, flags=re.S)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return NUMBER.findall(text)


#: The package's own constants that prose may state (the 95 % of an unseparated pair, the 10 of 10-NN), and
#: the width of the study's networks, a setting of runs the notebooks read from results/.
CONSTANTS = f"{SEPARATED_ABOVE:g} {KNN_K} 0.25"


def _outputs_and_code(nb) -> str:
    parts = [CONSTANTS]
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts.append(cell.source)
        for output in cell.get("outputs", []):
            parts.append(str(output.get("text", "")))
            parts += [
                str(output.get("data", {}).get(kind, "")) for kind in ("text/plain", "text/markdown", "text/html")
            ]
    return "\n".join(parts)


def test_prose_numbers_finds_the_numbers_a_reader_sees():
    text = "CC is 0.7143, **-0.37 points**, 97 % and 12 points; not `0.5`, $0.9$, [a](x_0.3.md), 2020 or notebook 03."
    assert prose_numbers(text) == ["0.7143", "-0.37", "97", "12"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_number_in_the_prose_is_in_the_outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    seen = _outputs_and_code(nb)
    stray = [
        (i, number)
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "markdown"
        for number in prose_numbers(cell.source)
        if not re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", seen)
    ]
    assert not stray, f"{path.name}: prose numbers not in any output (cell, number): {stray}"
