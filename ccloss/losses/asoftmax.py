"""A-Softmax (SphereFace, Liu et al., CVPR 2017): an angular margin on the cosine head."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from ..models import ModelOutput
from ..options import option
from .base import NONNEGATIVE, Criterion, LossOutput, as_compute, check_labels, detached

__all__ = ["ASoftmaxLoss", "sphereface_psi_from_cos", "annealed_lambda", "asoftmax_logits"]


def sphereface_psi_from_cos(cos_theta: Tensor, m: int) -> Tensor:
    """psi(theta) = (-1)^k cos(m theta) - 2k on [k pi/m, (k+1) pi/m], k = floor(m theta / pi) clamped to [0, m - 1],
    from cos(theta), as SphereFace's code: cos(m theta) = T_m(cos theta) (Chebyshev), no gradient through acos."""
    m = int(m)
    k = torch.floor(m * torch.acos(cos_theta.detach().clamp(-1.0, 1.0)) / math.pi).clamp(0, m - 1)
    previous, chebyshev = torch.ones_like(cos_theta), cos_theta
    for _ in range(m - 1):
        previous, chebyshev = chebyshev, 2.0 * cos_theta * chebyshev - previous
    return (1.0 - 2.0 * torch.remainder(k, 2)) * chebyshev - 2.0 * k


def annealed_lambda(step: int | float, lambda_base: float, lambda_gamma: float, lambda_min: float) -> float:
    """lambda_a = max(lambda_min, lambda_base / (1 + lambda_gamma * step)), ``step`` 0-based (SphereFace training)."""
    return max(float(lambda_min), float(lambda_base) / (1.0 + float(lambda_gamma) * float(step)))


def asoftmax_logits(logits: Tensor, features: Tensor, labels: Tensor, margin: int, lambda_a: float) -> Tensor:
    """Cosine logits |x| cos(theta_j), the target's replaced by |x| (lambda_a cos + psi) / (1 + lambda_a)."""
    check_labels(logits, labels)
    logits = as_compute(logits)
    norm = features.to(logits.dtype).norm(dim=1, keepdim=True)
    cos_t = (logits / norm.clamp_min(1e-12)).clamp(-1.0, 1.0).gather(1, labels[:, None].long())
    target_logit = norm * (lambda_a * cos_t + sphereface_psi_from_cos(cos_t, margin)) / (1.0 + lambda_a)
    return torch.where(F.one_hot(labels.long(), logits.shape[1]).bool(), target_logit, logits)


@dataclass(frozen=True)
class ASoftmaxOptions:
    margin: int = option(4, "angular margin m", must="an integer in [1, 10]", test=lambda v: 1 <= v <= 10)
    lambda_base: float = option(1500.0, "lambda_a at step 0", **NONNEGATIVE)
    lambda_gamma: float = option(0.1, "decay rate of lambda_a", **NONNEGATIVE)
    lambda_min: float = option(5.0, "the floor of lambda_a", **NONNEGATIVE)


class ASoftmaxLoss(Criterion):
    """A-Softmax (SphereFace, Liu et al. CVPR 2017): CE on logits whose target is |x| (lambda_a cos + psi) / (1 +
    lambda_a), lambda_a annealed (:func:`annealed_lambda`). Needs the cosine head. Parts: ce, asoftmax, lambda_a."""

    name, paper_name, Options = "asoftmax", "A-Softmax", ASoftmaxOptions
    summary = "SphereFace margin psi(theta) on the cosine head, annealed lambda"

    def lambda_at(self, step: int | float) -> float:
        return annealed_lambda(step, self.lambda_base, self.lambda_gamma, self.lambda_min)

    def forward(self, output: ModelOutput, labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        self._check_cosine_head(output)
        lambda_a = self.lambda_at(step)
        loss = F.cross_entropy(asoftmax_logits(logits, output.features, labels, self.margin, lambda_a), labels)
        ce = F.cross_entropy(as_compute(logits), labels)
        lam = torch.tensor(lambda_a, device=loss.device)
        return LossOutput(loss=loss, parts=detached(ce=ce, asoftmax=loss, lambda_a=lam))
