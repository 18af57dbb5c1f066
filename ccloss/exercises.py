"""The check behind every "Your turn" exercise of the notebooks: an exercise cell starts from
``answer = None`` (the copy in ``notebooks/exercises/`` stops there); the cell after it calls :func:`check`.
Numbers and tensors are compared with a tolerance (``numpy.allclose``), other answers exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["check"]


def _matches(answer: Any, expected: Any, rtol: float, atol: float) -> tuple[bool, str]:
    if isinstance(expected, (str, bool)) or expected is None:
        return answer == expected, f"expected {expected!r}"
    try:
        got, want = (np.asarray(v.detach().cpu().double() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
                     for v in (answer, expected))  # fmt: skip
    except (TypeError, ValueError):
        return False, f"expected a number or an array like {type(expected).__name__}"
    if got.shape != want.shape:
        return False, f"expected shape {want.shape}, got {got.shape}"
    close = np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    return bool(close), "" if close else f"largest difference {np.nanmax(np.abs(got - want)):.3g}"


def check(name: str, answer: Any, expected: Any, hint: str = "", rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Print a tick when ``answer`` equals ``expected``; else raise AssertionError saying what is off (and
    ``hint``), also when the exercise is not done yet (``answer`` is None, or a tuple or list holding a None)."""
    if answer is None or (isinstance(answer, (tuple, list)) and any(part is None for part in answer)):
        raise AssertionError(f"✗ {name}: not done yet (the answer is still None). {hint}".strip())
    ok, detail = _matches(answer, expected, rtol, atol)
    if not ok:
        raise AssertionError(f"✗ {name}: not yet ({detail}). {hint}".strip())
    print(f"\N{CHECK MARK} {name}: correct")
