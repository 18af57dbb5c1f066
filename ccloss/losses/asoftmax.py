"""A-Softmax (SphereFace, Liu et al., CVPR 2017): an angular margin on the cosine head."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import Criterion, LossOutput, ModelNeeds, as_compute, check_labels, detached, require

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..models import ModelOutput

__all__ = ["ASoftmaxLoss", "sphereface_psi", "sphereface_psi_from_cos", "annealed_lambda", "asoftmax_logits"]


def sphereface_psi(theta: Tensor, m: int) -> Tensor:
    """psi(theta) = (-1)^k cos(m theta) - 2k on [k pi/m, (k+1) pi/m], k = floor(m theta / pi).

    SphereFace (Liu et al., CVPR 2017): a monotonically decreasing extension of cos(m theta) to
    [0, pi]; m = 1 gives cos(theta). k is clamped to [0, m - 1] so theta = pi stays on the last
    interval (psi is continuous, so this changes nothing).
    """
    m = int(m)
    k = torch.floor(m * theta.detach() / math.pi).clamp(0, m - 1)
    sign = 1.0 - 2.0 * torch.remainder(k, 2)
    return sign * torch.cos(m * theta) - 2.0 * k


def _chebyshev(x: Tensor, m: int) -> Tensor:
    """T_m(x), so that T_m(cos theta) = cos(m theta), by the three-term recurrence."""
    if m == 0:
        return torch.ones_like(x)
    previous, current = torch.ones_like(x), x
    for _ in range(m - 1):
        previous, current = current, 2.0 * x * current - previous
    return current


def sphereface_psi_from_cos(cos_theta: Tensor, m: int) -> Tensor:
    """psi(theta) from cos(theta), as the official code and its PyTorch port compute it.

    cos(m theta) is the Chebyshev polynomial T_m(cos theta), so the gradient never goes through
    acos (whose derivative is infinite at cos = +-1); k = floor(m acos(cos theta) / pi) is a
    constant for autograd.
    """
    m = int(m)
    theta = torch.acos(cos_theta.detach().clamp(-1.0, 1.0))
    k = torch.floor(m * theta / math.pi).clamp(0, m - 1)
    sign = 1.0 - 2.0 * torch.remainder(k, 2)
    return sign * _chebyshev(cos_theta, m) - 2.0 * k


def annealed_lambda(
    step: int | float, lambda_base: float = 1500.0, lambda_gamma: float = 0.1, lambda_min: float = 5.0
) -> float:
    """lambda_a = max(lambda_min, lambda_base / (1 + lambda_gamma * step)) (SphereFace training).

    ``step`` is the 0-based global optimisation step: step 0 gives lambda_base.
    """
    return max(float(lambda_min), float(lambda_base) / (1.0 + float(lambda_gamma) * float(step)))


def asoftmax_logits(logits: Tensor, features: Tensor, labels: Tensor, margin: int, lambda_a: float) -> Tensor:
    """Logits with the A-Softmax target logit |x| (lambda_a cos + psi) / (1 + lambda_a).

    ``logits`` are the cosine head's |x| cos(theta_j); ``features`` the head's input x. The
    non-target logits stay |x| cos(theta_j).
    """
    check_labels(logits, labels)
    logits = as_compute(logits)
    norm = features.to(logits.dtype).norm(dim=1, keepdim=True)
    cos_theta = (logits / norm.clamp_min(1e-12)).clamp(-1.0, 1.0)
    target = F.one_hot(labels.long(), logits.shape[1]).bool()
    cos_t = cos_theta.gather(1, labels[:, None].long())
    psi_t = sphereface_psi_from_cos(cos_t, margin)
    target_logit = norm * (lambda_a * cos_t + psi_t) / (1.0 + lambda_a)
    return torch.where(target, target_logit, logits)


class ASoftmaxLoss(Criterion):
    """A-Softmax (SphereFace, Liu et al. CVPR 2017): CE on logits whose target entry is
    f_y = |x| (lambda_a cos theta_y + psi(theta_y)) / (1 + lambda_a).

    psi(theta) = (-1)^k cos(m theta) - 2k, k = floor(m theta / pi); lambda_a =
    max(lambda_min, lambda_base / (1 + lambda_gamma * step)) anneals from plain softmax to the
    margin, as in the official code (github.com/wy1iu/sphereface) and its PyTorch port
    (clcarwin/sphereface_pytorch, which counts iterations from 1; here ``step`` is 0-based).
    Needs the cosine head (logits |x| cos theta, unit-norm class weights, no bias). At test time
    the model's plain cosine logits are the prediction; the criterion always applies the margin.
    Parts: ce (of the plain logits), asoftmax, lambda_a.
    """

    name = "asoftmax"
    paper_name = "A-Softmax"
    summary = "SphereFace margin psi(theta) on the cosine head, annealed lambda"

    def __init__(
        self,
        num_classes: int,
        *,
        margin: int = 4,
        lambda_base: float = 1500.0,
        lambda_gamma: float = 0.1,
        lambda_min: float = 5.0,
    ) -> None:
        super().__init__(num_classes, **self.given(locals()))
        require(1 <= self.margin <= 10, f"margin must be an integer in [1, 10], got {self.margin}")
        require(self.lambda_base >= 0 and self.lambda_min >= 0, "lambda_base and lambda_min must be >= 0")
        require(self.lambda_gamma >= 0, f"lambda_gamma must be >= 0, got {self.lambda_gamma}")

    @property
    def needs(self) -> ModelNeeds:
        return ModelNeeds(head="cosine")

    def lambda_at(self, step: int | float) -> float:
        return annealed_lambda(step, self.lambda_base, self.lambda_gamma, self.lambda_min)

    def forward(self, output: ModelOutput, labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        self._check_cosine_head(output)
        lambda_a = self.lambda_at(step)
        modified = asoftmax_logits(logits, output.features, labels, self.margin, lambda_a)
        loss = F.cross_entropy(modified, labels)
        ce = F.cross_entropy(as_compute(logits), labels)
        return LossOutput(
            loss=loss,
            parts=detached(ce=ce, asoftmax=loss, lambda_a=torch.tensor(lambda_a, device=loss.device)),
        )
