"""Focal loss: FL = -alpha (1 - p_t)^gamma log p_t (Lin et al., ICCV 2017)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import Criterion, LossOutput, as_compute, check_labels, detached, require

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..models import ModelOutput

__all__ = ["FocalLoss", "focal_loss"]


def focal_loss(logits: Tensor, labels: Tensor, gamma: float = 2.0, alpha: float = 1.0) -> Tensor:
    """FL = mean over the batch of -alpha (1 - p_t)^gamma log p_t (Lin et al., ICCV 2017).

    The gradient flows through the modulating factor too (as in the paper). gamma=0, alpha=1 is
    the cross-entropy.
    """
    check_labels(logits, labels)
    log_p = F.log_softmax(as_compute(logits), dim=1)
    log_pt = log_p.gather(1, labels[:, None].long()).squeeze(1)
    if gamma == 0:
        return -alpha * log_pt.mean()
    # clamp: (1 - p_t)^gamma has an infinite derivative at p_t = 1 when gamma < 1
    modulator = (-torch.expm1(log_pt)).clamp_min(torch.finfo(log_pt.dtype).tiny) ** gamma
    return (-alpha * modulator * log_pt).mean()


class FocalLoss(Criterion):
    """Focal loss: FL = -alpha (1 - p_t)^gamma log p_t, batch mean (Lin et al., ICCV 2017).

    Scalar alpha (no class balancing), gamma = 2, alpha = 1 (docs/baselines.md). Parts: ce, focal.
    """

    name = "focal"
    paper_name = "Focal"
    summary = "-alpha (1 - p_t)^gamma log p_t"

    def __init__(self, num_classes: int, *, gamma: float = 2.0, alpha: float = 1.0) -> None:
        super().__init__(num_classes, **self.given(locals()))
        require(self.gamma >= 0, f"gamma must be >= 0, got {self.gamma}")
        require(self.alpha > 0, f"alpha must be > 0, got {self.alpha}")

    def forward(self, output: ModelOutput, labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        loss = focal_loss(logits, labels, self.gamma, self.alpha)
        ce = F.cross_entropy(as_compute(logits), labels)
        return LossOutput(loss=loss, parts=detached(ce=ce, focal=loss))
