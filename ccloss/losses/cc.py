"""CC-Loss as a training objective: L = CE + lam * CC on the CAM's attention vectors (Song et al., ICPR 2020)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor
from torch.nn import functional as F

from ..cc_loss import CCLoss
from .base import Criterion, LossOutput, ModelNeeds, as_compute, detached, require

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..models import ModelOutput

__all__ = ["CrossEntropyWithCC"]

#: The criterion's hyperparameters that configure its CCLoss (the others: lam and its schedule).
CC_OPTIONS = ("form", "squared", "eps", "group_size", "normalize", "tau")


class CrossEntropyWithCC(Criterion):
    """CC-Loss: L = CE + lam(t) * CC(attention, labels) (Song et al., ICPR 2020; reconstruction).

    CC = d_intra / (d_inter + eps) on the squared Euclidean distances between the
    channel-attention vectors of the batch (default form; see :mod:`ccloss.cc_loss` for the
    variants and ``normalize``). The inner :class:`~ccloss.cc_loss.CCLoss` is the attribute ``cc``.
    Needs the CAM. ``warmup`` and ``ramp`` are fractions of training: lam(t) = 0 for the first
    ``warmup``, then grows linearly to ``lam`` over the next ``ramp`` (both 0: lam throughout);
    they need the number of training steps (:meth:`set_total_steps`, which the loop calls).
    Parts: ce, cc (unweighted), d_intra, d_inter, and lam (the weight in use) with a schedule.
    """

    name = "cc"
    paper_name = "CC-Loss"
    hparam_types: ClassVar[dict[str, type]] = {"group_size": int}
    summary = "CE + lam * d_intra / (d_inter + eps) on the CAM's attention vectors"

    def __init__(
        self,
        num_classes: int,
        *,
        lam: float = 0.1,
        form: str = "ratio",
        squared: bool = True,
        eps: float = 1e-3,
        group_size: int | None = None,
        normalize: str = "none",
        tau: float = 0.1,
        warmup: float = 0.0,
        ramp: float = 0.0,
    ) -> None:
        super().__init__(num_classes, **self.given(locals()))
        require(self.lam >= 0, f"lam must be >= 0, got {self.lam}")
        require(
            self.warmup >= 0 and self.ramp >= 0 and self.warmup + self.ramp <= 1,
            f"warmup and ramp are fractions of training: both >= 0 with a sum <= 1, got {self.warmup}, {self.ramp}",
        )
        self.cc = CCLoss(**{name: self.hparams[name] for name in CC_OPTIONS})
        self.total_steps: int | None = None

    @property
    def needs(self) -> ModelNeeds:
        return ModelNeeds(cam=True)

    @property
    def scheduled(self) -> bool:
        return self.warmup > 0 or self.ramp > 0

    def set_total_steps(self, total_steps: int) -> None:
        """The number of optimisation steps of the whole run (epochs x steps per epoch)."""
        require(int(total_steps) >= 1, f"total_steps must be a positive number of steps, got {total_steps!r}")
        self.total_steps = int(total_steps)

    def lam_at(self, step: int) -> float:
        """The weight of the CC term at optimisation step ``step`` (0-based)."""
        if not self.scheduled:
            return self.lam
        if self.total_steps is None:
            raise ValueError(
                "CC-Loss with warmup/ramp needs the number of training steps: call "
                "criterion.set_total_steps(epochs * steps_per_epoch) first (the training loop does)"
            )
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
