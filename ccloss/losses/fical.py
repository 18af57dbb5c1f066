"""FICAL (Focal ICAL, VCIP 2019), a reconstruction from the abstract: confusion-weighted class cosines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import Criterion, LossOutput, ModelNeeds, as_compute, detached, require

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..models import ModelOutput
from .ical import unit_rows

__all__ = ["FICALoss", "batch_confusion", "fical_penalty"]


def batch_confusion(probs: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class mean of the softmax rows: (K x K rates, K bool "class present in the batch")."""
    one_hot = F.one_hot(labels.long(), num_classes).to(probs.dtype)  # B x K
    counts = one_hot.sum(dim=0)  # K
    sums = one_hot.T @ probs  # K x K: row i sums p(. | x) over samples of class i
    return sums / counts.clamp_min(1.0)[:, None], counts > 0


def fical_penalty(head_weight: Tensor, confusion: Tensor) -> Tensor:
    """sum_{i != j} W_ij cos_ij / sum_{i != j} W_ij with W = (R + R^T) / 2 detached.

    With uniform R this is the mean off-diagonal pairwise cosine of the class vectors.
    """
    w = unit_rows(head_weight)
    k = w.shape[0]
    rates = confusion.detach().to(w.dtype)
    weights = 0.5 * (rates + rates.T)
    weights = weights.masked_fill(torch.eye(k, dtype=torch.bool, device=w.device), 0.0)
    cosines = w @ w.T
    return (weights * cosines).sum() / weights.sum().clamp_min(1e-12)


class FICALoss(Criterion):
    """FICAL (Focal ICAL, VCIP 2019), a reconstruction from the abstract:
    L = CE + lam * sum_{i != j} W_ij cos_ij / sum_{i != j} W_ij.

    Only the abstract is known: class-pair cosines weighted by a confusion rate evaluated at each
    iteration. Here R_ij = mean softmax probability of class j on the batch's samples of class i,
    smoothed by an EMA (``momentum``; 0 = the current batch only; rows of classes absent from the
    batch keep their value), W = (R + R^T) / 2 detached, diagonal excluded. R lives in the
    buffer ``confusion`` (checkpointed with the criterion's state_dict), initialised to 1/K, so
    with the initial R the penalty is ICAL's mean off-diagonal cosine. R is updated before the
    penalty is computed, and only in training mode with gradients enabled (evaluation under
    ``torch.no_grad()`` or ``criterion.eval()`` leaves it alone). Needs the cosine head.
    Parts: ce, fical (the unweighted penalty).
    """

    name = "fical"
    paper_name = "FICAL"
    summary = "reconstruction from the abstract: CE + lam * confusion-weighted pairwise cosine"

    confusion: Tensor

    def __init__(self, num_classes: int, *, lam: float = 5.0, momentum: float = 0.9) -> None:
        super().__init__(num_classes, **self.given(locals()))
        require(self.lam >= 0, f"lam must be >= 0, got {self.lam}")
        require(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        k = self.num_classes
        self.register_buffer("confusion", torch.full((k, k), 1.0 / k))

    @property
    def needs(self) -> ModelNeeds:
        return ModelNeeds(head="cosine")

    @torch.no_grad()
    def update_confusion(self, logits: Tensor, labels: Tensor) -> None:
        probs = F.softmax(logits.detach().to(self.confusion.dtype), dim=1)
        rates, present = batch_confusion(probs, labels.to(probs.device), self.num_classes)
        blended = self.momentum * self.confusion + (1.0 - self.momentum) * rates
        self.confusion.copy_(torch.where(present[:, None], blended, self.confusion))

    def forward(self, output: ModelOutput, labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        self._check_cosine_head(output)
        if self.confusion.device != logits.device:
            self.confusion = self.confusion.to(logits.device)
        if self.training and torch.is_grad_enabled():
            self.update_confusion(logits, labels)
        ce = F.cross_entropy(as_compute(logits), labels)
        penalty = fical_penalty(output.head_weight, self.confusion)
        return LossOutput(loss=ce + self.lam * penalty, parts=detached(ce=ce, fical=penalty))
