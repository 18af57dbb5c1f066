"""Every training objective of the CC-Loss paper's comparison behind one interface (``base.py``):

``ce`` CE and ``focal`` Focal (``ce.py``); ``cc`` CC-Loss, CE + lam * CC (``cc.py``); ``asoftmax`` A-Softmax,
SphereFace's margin on the cosine head (``asoftmax.py``); ``mcloss`` MC-Loss (``mcloss.py``); ``ical`` ICAL
and ``fical`` FICAL, a reconstruction from its abstract (``ical.py``).

``build_criterion(name, num_classes, **hparams)`` builds one (``base.py`` has the interface). Which head
and last-stage width a loss trains with is decided in ``ccloss.config``, not here.
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
    """The criterion called ``name`` (a key of LOSSES: ``"cc"`` is CC-Loss) with ``hparams``.

    Unknown names and hyperparameters raise ValueError listing the valid ones; a value of the wrong type
    or range raises too (strings are parsed by the CLI, ``ccloss.cli.parse_loss_params``).
    """
    return loss_class(name)(num_classes, **hparams)
