"""CC-Loss as a training objective: L = CE + lam * CC on the CAM's attention vectors (Song et al., ICPR 2020)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor
from torch.nn import functional as F

from ..cc_loss import CCLoss, CCOptions
from ..models import ModelOutput
from ..options import option
from .base import NONNEGATIVE, Criterion, LossOutput, as_compute, detached, require

__all__ = ["CrossEntropyWithCC", "CCCriterionOptions"]

_FRACTION = dict(must="a fraction of training in [0, 1]", test=lambda v: 0 <= v <= 1)


@dataclass(frozen=True)
class CCCriterionOptions(CCOptions):
    """CC-Loss's options (:class:`~ccloss.cc_loss.CCOptions`), then the weight lam and its schedule."""

    lam: float = option(
        0.1, "weight of the CC term (the paper's 1 collapsed here: docs/study_cc_default.md)", **NONNEGATIVE
    )
    warmup: float = option(0.0, "lam is 0 for this fraction of training", **_FRACTION)
    ramp: float = option(0.0, "then grows linearly to lam over this fraction", **_FRACTION)


class CrossEntropyWithCC(Criterion):
    """CC-Loss: L = CE + lam(t) * CC(attention, labels) (Song et al., ICPR 2020), CC the :class:`CCLoss` ``cc``; lam(t)
    is 0 for the first ``warmup`` of training, then grows to ``lam`` over ``ramp``. Parts: ce, cc, d_intra, d_inter."""

    name, paper_name, Options = "cc", "CC-Loss", CCCriterionOptions
    summary = "CE + lam * CC on the CAM's attention vectors (pair_ratio; form=ratio: the paper's)"

    def __init__(self, num_classes: int, **hparams) -> None:
        super().__init__(num_classes, **hparams)
        both = f"{self.warmup}, {self.ramp}"
        require(self.warmup + self.ramp <= 1, f"warmup and ramp are fractions of training with a sum <= 1, got {both}")
        self.cc = CCLoss(**{f.name: self.hparams[f.name] for f in fields(CCOptions)})
        self.total_steps: int | None = None

    scheduled = property(lambda self: self.warmup > 0 or self.ramp > 0)  #: lam has a warmup or a ramp

    def set_total_steps(self, total_steps: int) -> None:
        """The number of optimisation steps of the whole run (epochs x steps per epoch)."""
        require(int(total_steps) >= 1, f"total_steps must be a positive number of steps, got {total_steps!r}")
        self.total_steps = int(total_steps)

    def lam_at(self, step: int) -> float:
        """The weight of the CC term at optimisation step ``step`` (0-based)."""
        if not self.scheduled:
            return self.lam
        if self.total_steps is None:
            raise ValueError("CC-Loss with warmup/ramp needs the number of training steps: call criterion."
                             "set_total_steps(epochs * steps_per_epoch) first (the training loop does)")  # fmt: skip
        start = self.warmup * self.total_steps
        if step < start:
            return 0.0
        if self.ramp == 0:
            return self.lam
        return self.lam * min(1.0, (step - start) / (self.ramp * self.total_steps))

    def forward(self, output: ModelOutput, labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        if output.attention is None:
            raise ValueError("CC-Loss needs the channel attention vectors: build the model with cam=True")
        ce = F.cross_entropy(as_compute(logits), labels)
        stats = self.cc.statistics(output.attention, labels)
        lam = self.lam_at(step)
        parts = dict(ce=ce, cc=stats.loss, d_intra=stats.d_intra, d_inter=stats.d_inter)
        if self.scheduled:
            parts["lam"] = torch.tensor(lam, device=ce.device)
        return LossOutput(loss=ce + lam * stats.loss, parts=detached(**parts))
