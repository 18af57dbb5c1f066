"""How every table of this repository writes a mean over seeds: ``mean ± std``. Standard library only, so
that ``tools/readme_numbers.py`` can use it before anything is installed."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["format_mean_std"]


def _missing(value: Any) -> bool:
    try:
        return value is None or math.isnan(value)
    except TypeError:  # pandas' NA, or not a number
        return True


def format_mean_std(mean: float, std: float, digits: int = 2, missing: str = "") -> str:
    """``"mean ± std"`` to ``digits`` decimals, the std to two significant digits where ``digits`` would round
    it to 0 (``0.10 ± 0.0040``): only a zero spread prints as 0. The mean alone when the std is undefined
    (one run); ``missing`` without a mean."""
    if _missing(mean):
        return missing
    if _missing(std):
        return f"{mean:.{digits}f}"
    spread = f"{std:.{digits}f}"
    if std != 0 and float(spread) == 0:
        spread = f"{std:.{1 - math.floor(math.log10(abs(std)))}f}"
    return f"{mean:.{digits}f} ± {spread}"
