"""The checks behind the notebooks' "Your turn" exercises, one module per notebook (``nb01.py``, ...).

A check takes the learner's answer and the exercise's inputs, computes the expected value itself (so
nothing in the notebook's scope holds the answer to copy), and prints a tick or raises AssertionError
with a hint that points at the idea, not at the code. Each module lists, in ``CASES``, the inputs, the
right answer and the plausible wrong ones (a skipped scaling, a copied variable, an off-by-one);
tests/test_exercise_checks.py requires every check to accept the right answer and reject each wrong one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["Case", "close", "not_done", "passed"]


@dataclass
class Case:
    """One exercise's check, its inputs, the right answer and the wrong ones, each built from the inputs."""

    check: Callable[..., None]
    inputs: Callable[[], tuple]
    right: Callable[..., Any]
    wrong: dict[str, Callable[..., Any]] = field(default_factory=dict)


def not_done(name: str, answer: Any) -> None:
    """Raise when the exercise still holds its placeholder (None, or a tuple or list with a None)."""
    if answer is None or (isinstance(answer, (tuple, list)) and any(part is None for part in answer)):
        raise AssertionError(f"✗ {name}: not done yet (the answer is still None).")


def close(answer: Any, expected: Any, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    """Numbers, arrays or tensors equal within the tolerances (shapes must match)."""
    try:
        got, want = (
            np.asarray(v.detach().cpu().double() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
            for v in (answer, expected)
        )
    except (TypeError, ValueError):
        return False
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True))


def passed(name: str, ok: bool, hint: str) -> None:
    """Print a tick, or raise AssertionError with the hint (never the expected value)."""
    if not ok:
        raise AssertionError(f"✗ {name}: not yet. {hint}")
    print(f"\N{CHECK MARK} {name}: correct")
