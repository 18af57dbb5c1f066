"""Every exercise check accepts the right answer and rejects each plausible wrong one (issue 25): a check
that passes a skipped scaling, a copied variable or an off-by-one teaches nothing."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

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
