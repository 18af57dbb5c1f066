"""Cross-entropy: L = -log softmax(z)_y; with the CAM it is the paper's CE+CAM row."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor
from torch.nn import functional as F

from .base import Criterion, LossOutput, as_compute, detached

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..models import ModelOutput

__all__ = ["CrossEntropy"]


class CrossEntropy(Criterion):
    """Plain cross-entropy on ``output.logits``: L = -log softmax(z)_y (with or without CAM)."""

    name = "ce"
    paper_name = "CE"
    summary = "cross-entropy; with --cam it is the paper's CE+CAM row"

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)

    def forward(self, output: ModelOutput, labels: Tensor, step: int = 0) -> LossOutput:
        ce = F.cross_entropy(as_compute(self._logits(output, labels)), labels)
        return LossOutput(loss=ce, parts=detached(ce=ce))
