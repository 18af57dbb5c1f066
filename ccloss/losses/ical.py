"""ICAL (Inter-Class Angular Loss, Hao et al., AAAI 2019): push the unit class vectors apart in angle."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor
from torch.nn import functional as F

from .base import Criterion, LossOutput, ModelNeeds, as_compute, detached, require

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..models import ModelOutput

__all__ = ["ICALoss", "ical_penalty", "unit_rows"]


def unit_rows(head_weight: Tensor) -> Tensor:
    if head_weight.dim() != 2:
        raise ValueError(f"head_weight must be K x C, got shape {tuple(head_weight.shape)}")
    return F.normalize(as_compute(head_weight), dim=1)


def ical_penalty(head_weight: Tensor) -> Tensor:
    """||sum_j w_j||^2 / K^2 for unit-norm class vectors w_j (rows are re-normalised).

    Equals the mean of cos(w_i, w_j) over all K^2 ordered pairs, diagonal included:
    = 1/K + (K - 1)/K * (mean off-diagonal cosine). O(K C), no K x K matrix.
    """
    w = unit_rows(head_weight)
    k = w.shape[0]
    return w.sum(dim=0).pow(2).sum() / (k * k)


class ICALoss(Criterion):
    """ICAL (Hao et al., AAAI 2019): L = CE + (lam / K^2) ||sum_j w_j||^2.

    w_j are the unit-norm class vectors of the cosine head (``output.head_weight``); the penalty
    is the mean pairwise cosine of the class vectors over all ordered pairs including i = j
    (see :func:`ical_penalty`), pushing the classes apart in angle. lam = 5 (with augmentation).
    Needs the cosine head. Parts: ce, ical (the unweighted penalty).
    """

    name = "ical"
    paper_name = "ICAL"
    summary = "CE + lam * mean pairwise cosine of unit class vectors (||sum w||^2 / K^2)"

    def __init__(self, num_classes: int, *, lam: float = 5.0) -> None:
        super().__init__(num_classes, **self.given(locals()))
        require(self.lam >= 0, f"lam must be >= 0, got {self.lam}")

    @property
    def needs(self) -> ModelNeeds:
        return ModelNeeds(head="cosine")

    def forward(self, output: ModelOutput, labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        self._check_cosine_head(output)
        ce = F.cross_entropy(as_compute(logits), labels)
        penalty = ical_penalty(output.head_weight)
        return LossOutput(loss=ce + self.lam * penalty, parts=detached(ce=ce, ical=penalty))
