"""ICAL (Hao et al., AAAI 2019): unit class vectors apart in angle; FICAL (VCIP 2019), confusion-weighted."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from ..models import ModelOutput
from ..options import option
from .base import NONNEGATIVE, Criterion, LossOutput, as_compute, detached

__all__ = ["ICALoss", "FICALoss", "ical_penalty", "fical_penalty", "batch_confusion", "unit_rows"]


def unit_rows(head_weight: Tensor) -> Tensor:
    if head_weight.dim() != 2:
        raise ValueError(f"head_weight must be K x C, got shape {tuple(head_weight.shape)}")
    return F.normalize(as_compute(head_weight), dim=1)


def ical_penalty(head_weight: Tensor) -> Tensor:
    """||sum_j w_j||^2 / K^2, w_j the unit class vectors: mean cos(w_i, w_j) over all K^2 ordered pairs, O(K C)."""
    w = unit_rows(head_weight)
    return w.sum(dim=0).pow(2).sum() / (w.shape[0] ** 2)


def fical_penalty(head_weight: Tensor, confusion: Tensor) -> Tensor:
    """sum_{i != j} W_ij cos_ij / sum_{i != j} W_ij, W = (R + R^T) / 2 detached."""
    w = unit_rows(head_weight)
    rates = confusion.detach().to(w.dtype)
    weights = (0.5 * (rates + rates.T)).masked_fill(torch.eye(w.shape[0], dtype=torch.bool, device=w.device), 0.0)
    return (weights * (w @ w.T)).sum() / weights.sum().clamp_min(1e-12)


def batch_confusion(probs: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class mean of the softmax rows: (K x K rates, K bool "class present in the batch")."""
    one_hot = F.one_hot(labels.long(), num_classes).to(probs.dtype)  # B x K
    counts = one_hot.sum(dim=0)
    return (one_hot.T @ probs) / counts.clamp_min(1.0)[:, None], counts > 0


@dataclass(frozen=True)
class ICALOptions:
    lam: float = option(5.0, "weight of the class-vector penalty (5 with augmentation, Hao et al.)", **NONNEGATIVE)


@dataclass(frozen=True)
class FICALOptions(ICALOptions):
    momentum: float = option(0.9, "EMA of the confusion rates (0: this batch only)", must="in [0, 1)",
                             test=lambda v: 0 <= v < 1)  # fmt: skip


class ICALoss(Criterion):
    """ICAL (Hao et al., AAAI 2019): L = CE + lam :func:`ical_penalty`; needs the cosine head. Parts: ce, ical."""

    name, paper_name, Options = "ical", "ICAL", ICALOptions
    summary = "CE + lam * mean pairwise cosine of unit class vectors (||sum w||^2 / K^2)"

    def penalty(self, output: ModelOutput, logits: Tensor, labels: Tensor) -> Tensor:
        return ical_penalty(output.head_weight)

    def forward(self, output: ModelOutput, labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        self._check_cosine_head(output)
        ce, penalty = F.cross_entropy(as_compute(logits), labels), self.penalty(output, logits, labels)
        return LossOutput(loss=ce + self.lam * penalty, parts=detached(ce=ce, **{self.name: penalty}))


class FICALoss(ICALoss):
    """FICAL (VCIP 2019), a reconstruction from the abstract: L = CE + lam :func:`fical_penalty`, R_ij the EMA
    (``momentum``) of the mean softmax of class j on class-i samples. Needs the cosine head. Parts: ce, fical."""

    name, paper_name, Options = "fical", "FICAL", FICALOptions
    summary = "reconstruction from the abstract: CE + lam * confusion-weighted pairwise cosine"
    confusion: Tensor

    def __init__(self, num_classes: int, **hparams: float) -> None:
        super().__init__(num_classes, **hparams)
        k = self.num_classes
        self.register_buffer("confusion", torch.full((k, k), 1.0 / k))

    @torch.no_grad()
    def update_confusion(self, logits: Tensor, labels: Tensor) -> None:
        probs = F.softmax(logits.detach().to(self.confusion.dtype), dim=1)
        rates, present = batch_confusion(probs, labels.to(probs.device), self.num_classes)
        blended = self.momentum * self.confusion + (1.0 - self.momentum) * rates
        self.confusion.copy_(torch.where(present[:, None], blended, self.confusion))

    def penalty(self, output: ModelOutput, logits: Tensor, labels: Tensor) -> Tensor:
        self.confusion = self.confusion.to(logits.device)
        if self.training and torch.is_grad_enabled():
            self.update_confusion(logits, labels)
        return fical_penalty(output.head_weight, self.confusion)
