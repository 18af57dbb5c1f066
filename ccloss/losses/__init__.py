"""Every objective of the CC-Loss paper's comparison behind one interface (``base.py``): ``ce`` and ``focal``
(``ce.py``); ``cc`` CE + lam * CC (``cc.py``); ``asoftmax`` SphereFace's margin on the cosine head (``asoftmax.py``);
``mcloss`` (``mcloss.py``); ``ical`` and ``fical``, a reconstruction from its abstract (``ical.py``).
``build_criterion(name, num_classes, **hparams)`` builds one; ccloss.config chooses the model's head and width.
"""

from __future__ import annotations

from typing import Any

from .asoftmax import ASoftmaxLoss
from .base import Criterion, LossOutput
from .cc import CrossEntropyWithCC
from .ce import CrossEntropy, FocalLoss
from .ical import FICALoss, ICALoss
from .mcloss import MCLoss, mc_xi

__all__ = ["LossOutput", "Criterion", "CrossEntropy", "CrossEntropyWithCC", "FocalLoss", "ASoftmaxLoss", "MCLoss"]
__all__ += ["ICALoss", "FICALoss", "LOSSES", "PAPER_NAMES", "build_criterion", "loss_class", "mc_xi"]

LOSSES: dict[str, type[Criterion]] = {
    cls.name: cls for cls in (CrossEntropy, CrossEntropyWithCC, FocalLoss, ASoftmaxLoss, MCLoss, ICALoss, FICALoss)
}
PAPER_NAMES: dict[str, str] = {name: cls.paper_name for name, cls in LOSSES.items()}


def loss_class(name: str) -> type[Criterion]:
    """``LOSSES[name]``, or a ValueError listing the valid names (and the key of a paper name)."""
    if isinstance(name, str) and name in LOSSES:
        return LOSSES[name]
    key = name.strip().lower() if isinstance(name, str) else None
    match = next((k for k, paper in PAPER_NAMES.items() if key in (k, paper.lower())), None)
    hint = f" ({name!r} is written {match!r} here)" if match else ""
    raise ValueError(f"unknown loss {name!r}{hint}; valid names: {', '.join(LOSSES)}")


def build_criterion(name: str, num_classes: int, **hparams: Any) -> Criterion:
    """The criterion ``LOSSES[name]`` with ``hparams``; a bad name or value raises a ValueError listing valid ones."""
    return loss_class(name)(num_classes, **hparams)
