"""Every exercise check accepts the right answer and rejects each plausible wrong one (issue 25): a check
that passes a skipped scaling, a copied variable or an off-by-one teaches nothing."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))  # the notebooks import their checks from their own folder

MODULES = sorted(p.stem for p in (NOTEBOOKS / "exercise_checks").glob("nb[0-9][0-9].py"))
CASES = [
    pytest.param(module, name, id=f"{module}-{name}")
    for module in MODULES
    for name in importlib.import_module(f"exercise_checks.{module}").CASES
]


def _case(module: str, name: str):
    return importlib.import_module(f"exercise_checks.{module}").CASES[name]


def test_every_lesson_notebook_has_at_least_two_checked_exercises():
    lessons = sorted(p.name[:2] for p in NOTEBOOKS.glob("0[1-6]_*.ipynb"))
    counts = {m[2:]: len(importlib.import_module(f"exercise_checks.{m}").CASES) for m in MODULES}
    too_few = {n: counts.get(n, 0) for n in lessons if counts.get(n, 0) < 2}
    assert not too_few, f"lesson notebooks with fewer than two checked exercises: {too_few}"


@pytest.mark.parametrize(("module", "name"), CASES)
def test_the_right_answer_passes(module, name, capsys):
    case = _case(module, name)
    inputs = case.inputs()
    case.check(case.right(*inputs), *inputs)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(("module", "name"), CASES)
def test_every_wrong_answer_and_the_placeholder_fail(module, name):
    case = _case(module, name)
    assert len(case.wrong) >= 2, f"{module}.{name}: list at least two plausible wrong answers"
    inputs = case.inputs()
    for label, wrong in {**case.wrong, "not done (None)": lambda *_: None}.items():
        with pytest.raises(AssertionError) as failure:
            case.check(wrong(*inputs), *inputs)
        message = str(failure.value)
        right = case.right(*inputs)
        if isinstance(right, (int, float)) and not isinstance(right, bool):
            assert f"{right:.4g}" not in message, f"{label}: the hint gives the answer away"


def test_r_precision_accepts_either_way_of_breaking_a_tie():
    """Two training vectors of different classes at the same place: the query's R = 2 nearest hold one
    certain 1 and one of the tied pair, so the R-precision is 50 % or 100 % by the library's tie-breaking."""
    nb05 = importlib.import_module("exercise_checks.nb05")
    train_x = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    train_y = np.array([1, 1, 0, 0])
    inputs = (train_x, train_y, np.array([[0.1, 0.0]]), np.array([1]), 1)
    assert nb05._r_precision_bounds(*inputs) == (50.0, 100.0)
    for answer in (50.0, 100.0):
        nb05.check_r_precision(answer, *inputs)
    with pytest.raises(AssertionError):
        nb05.check_r_precision(0.5, *inputs)
