"""Cross-entropy (with the CAM: the paper's CE+CAM row) and the focal loss (Lin et al., ICCV 2017)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from ..models import ModelOutput
from ..options import option
from .base import NONNEGATIVE, Criterion, LossOutput, as_compute, check_labels, detached

__all__ = ["CrossEntropy", "FocalLoss", "focal_loss"]


class CrossEntropy(Criterion):
    """Plain cross-entropy on ``output.logits``: L = -log softmax(z)_y (with or without CAM)."""

    name, paper_name = "ce", "CE"
    summary = "cross-entropy; with the CAM it is the paper's CE+CAM row"

    def forward(self, output: ModelOutput, labels: Tensor, step: int = 0) -> LossOutput:
        ce = F.cross_entropy(as_compute(self._logits(output, labels)), labels)
        return LossOutput(loss=ce, parts=detached(ce=ce))


def focal_loss(logits: Tensor, labels: Tensor, gamma: float = 2.0, alpha: float = 1.0) -> Tensor:
    """FL = batch mean of -alpha (1 - p_t)^gamma log p_t (gradient through the modulator too; gamma=0: CE)."""
    check_labels(logits, labels)
    log_pt = F.log_softmax(as_compute(logits), dim=1).gather(1, labels[:, None].long()).squeeze(1)
    if gamma == 0:
        return -alpha * log_pt.mean()
    # clamp: (1 - p_t)^gamma has an infinite derivative at p_t = 1 when gamma < 1
    modulator = (-torch.expm1(log_pt)).clamp_min(torch.finfo(log_pt.dtype).tiny) ** gamma
    return (-alpha * modulator * log_pt).mean()


@dataclass(frozen=True)
class FocalOptions:
    gamma: float = option(2.0, "focusing exponent (0: cross-entropy)", **NONNEGATIVE)
    alpha: float = option(1.0, "scalar weight", must="a finite number > 0", test=lambda v: v > 0)


class FocalLoss(Criterion):
    """Focal loss (Lin et al., ICCV 2017), scalar alpha, gamma 2 (docs/baselines.md). Parts: ce, focal."""

    name, paper_name, Options = "focal", "Focal", FocalOptions
    summary = "-alpha (1 - p_t)^gamma log p_t"

    def forward(self, output: ModelOutput, labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        loss = focal_loss(logits, labels, self.gamma, self.alpha)
        return LossOutput(loss=loss, parts=detached(ce=F.cross_entropy(as_compute(logits), labels), focal=loss))
