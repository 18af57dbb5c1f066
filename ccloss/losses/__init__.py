"""Every training objective of the CC-Loss paper's comparison, one file each, behind one interface.

=========  =========  ==================================================================
name       paper      objective (file)
=========  =========  ==================================================================
ce         CE         cross-entropy, with or without the CAM (``ce.py``)
cc         CC-Loss    CE + lam * CC on the channel-attention vectors (``cc.py``)
focal      Focal      -alpha (1 - p_t)^gamma log p_t (``focal.py``)
asoftmax   A-Softmax  SphereFace margin on the cosine head (``asoftmax.py``)
mcloss     MC-Loss    CE + 1.5 L_dis + 20 L_div (``mcloss.py``)
ical       ICAL       CE + lam * mean pairwise cosine of class vectors (``ical.py``)
fical      FICAL      confusion-weighted ICAL, a reconstruction from the abstract (``fical.py``)
=========  =========  ==================================================================

``build_criterion(name, num_classes, **hparams)`` builds one (``base.py`` has the interface);
``model_kwargs_for`` turns a criterion's :class:`ModelNeeds` into ``build_model`` arguments, so
the A-Softmax criterion gets the cosine head and MC-Loss the right last-stage width by themselves.
"""

from __future__ import annotations

from typing import Any

from ..models import HEADS
from .asoftmax import ASoftmaxLoss
from .base import Criterion, LossOutput, ModelNeeds
from .cc import CrossEntropyWithCC
from .ce import CrossEntropy
from .fical import FICALoss
from .focal import FocalLoss
from .ical import ICALoss
from .mcloss import MCLOSS_XI, MCLoss, mcloss_xi_for

__all__ = [
    "LossOutput",
    "ModelNeeds",
    "Criterion",
    "CrossEntropy",
    "CrossEntropyWithCC",
    "FocalLoss",
    "ASoftmaxLoss",
    "MCLoss",
    "ICALoss",
    "FICALoss",
    "LOSSES",
    "PAPER_NAMES",
    "MCLOSS_XI",
    "mcloss_xi_for",
    "build_criterion",
    "model_kwargs_for",
    "routed_hparams",
]

LOSSES: dict[str, type[Criterion]] = {
    cls.name: cls for cls in (CrossEntropy, CrossEntropyWithCC, FocalLoss, ASoftmaxLoss, MCLoss, ICALoss, FICALoss)
}
PAPER_NAMES: dict[str, str] = {name: cls.paper_name for name, cls in LOSSES.items()}
#: Hyperparameters with a field of their own in TrainConfig, the CLI and notebook 02.
ROUTED = ("lam", "form", "group_size")


def _lookup(name: str) -> type[Criterion]:
    if isinstance(name, str) and name in LOSSES:
        return LOSSES[name]
    hint = ""
    if isinstance(name, str):  # a paper name or another spelling: say which key it is
        key = name.strip().lower()
        match = next((k for k, paper in PAPER_NAMES.items() if key in (k, paper.lower())), None)
        hint = f" ({name!r} is written {match!r} here)" if match else ""
    raise ValueError(f"unknown loss {name!r}{hint}; valid names: {', '.join(LOSSES)}")


def build_criterion(name: str, num_classes: int, **hparams: Any) -> Criterion:
    """The criterion called ``name`` (a key of LOSSES: ``"cc"`` is CC-Loss) with ``hparams``.

    Unknown names and hyperparameters raise ValueError listing the valid ones; a value of the
    wrong type raises too (strings are parsed by the CLI, ``ccloss.cli.parse_loss_params``).
    """
    criterion_class = _lookup(name)
    criterion_class.resolve_hparams(hparams)  # unknown names: a ValueError listing the valid ones
    return criterion_class(num_classes, **hparams)


def routed_hparams(loss: str, loss_params: dict | None = None, **routed: Any) -> dict:
    """The hyperparameters for ``loss``: ``loss_params`` plus those of ``lam``, ``form`` and
    ``group_size`` that are not None *and* that the loss has (CE has no lambda: a lam given for a
    comparison of several losses reaches only the losses that take it)."""
    unknown = sorted(set(routed) - set(ROUTED))
    if unknown:
        raise ValueError(f"routed_hparams takes {', '.join(ROUTED)}, got {unknown}")
    takes = _lookup(loss).defaults
    params = dict(loss_params or {})
    params.update({k: v for k, v in routed.items() if v is not None and k in takes})
    return params


def _resolve_head(needs: ModelNeeds, head: str | None, paper: str) -> str:
    if head is not None and head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid heads: {', '.join(HEADS)}")
    if needs.head is None:
        return head or "linear"
    if head is not None and head != needs.head:
        detail = " (bias-free, unit-norm class weights)" if needs.head == "cosine" else ""
        raise ValueError(f"{paper} needs the {needs.head} head{detail}, got head={head!r}")
    return needs.head


def _resolve_width(needs: ModelNeeds, num_classes: int, width: int | None, default: int, paper: str) -> int:
    if needs.channels_per_class is None:
        return int(default if width is None else width)
    xi = needs.channels_per_class
    required = int(num_classes) * xi
    if width is not None and int(width) < required:
        raise ValueError(
            f"{paper} with xi={xi} needs a last stage of at least {num_classes} x {xi} = {required} channels, "
            f"got last_stage_width={width}: leave it unset (it then becomes {required}), raise it, or lower xi"
        )
    return int(required if width is None else width)


def model_kwargs_for(
    criterion: Criterion | str,
    num_classes: int,
    *,
    cam: bool,
    head: str | None = None,
    last_stage_width: int | None = None,
    default_last_width: int,
) -> dict[str, Any]:
    """``{"cam", "head", "last_stage_width"}`` for ``build_model``, adjusted to the loss's needs.

    A loss that needs the cosine head gets it when ``head`` is None; MC-Loss gets a last stage of
    num_classes * xi channels when ``last_stage_width`` is None. Impossible combinations raise a
    ValueError saying what to change.
    """
    if isinstance(criterion, str):
        criterion = build_criterion(criterion, num_classes)
    needs, paper = criterion.needs, criterion.paper_name
    if needs.cam is True and not cam:
        raise ValueError(f"{paper} needs the channel attention vectors: build the model with the CAM (cam=True)")
    if needs.cam is False and cam:
        raise ValueError(f"{paper} cannot be used with the channel attention module: set cam=False")
    return {
        "cam": bool(cam),
        "head": _resolve_head(needs, head, paper),
        "last_stage_width": _resolve_width(needs, num_classes, last_stage_width, default_last_width, paper),
    }
