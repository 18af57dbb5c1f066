"""ccloss.losses.asoftmax: SphereFace's psi, the annealed lambda and the A-Softmax logits."""

import math

import pytest
import torch
from torch.nn import functional as F

from ccloss.losses import build_criterion
from ccloss.losses.asoftmax import annealed_lambda, asoftmax_logits, sphereface_psi_from_cos
from ccloss.models import ModelOutput

from .helpers import B, C, K, make_labels, make_output


def psi_reference(theta: float, m: int) -> float:
    """Piecewise definition, found by an explicit loop over the intervals."""
    for k in range(m):
        lo, hi = k * math.pi / m, (k + 1) * math.pi / m
        if lo <= theta <= hi:
            return (-1) ** k * math.cos(m * theta) - 2 * k
    raise AssertionError(theta)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_psi_against_piecewise_reference(m):
    theta = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    psi = sphereface_psi_from_cos(torch.cos(theta), m)  # the Chebyshev form used in training
    reference = torch.tensor([psi_reference(t, m) for t in theta.tolist()], dtype=torch.float64)
    assert torch.allclose(psi, reference, atol=1e-9)
    # monotonic decrease, from 1 at 0 to 1 - 2m at pi
    assert (psi[1:] - psi[:-1] < 1e-9).all()
    assert psi[0].item() == pytest.approx(1.0)
    assert psi[-1].item() == pytest.approx(1.0 - 2 * m)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_psi_continuous_at_joints(m):
    for k in range(1, m):
        joint = torch.tensor(k * math.pi / m, dtype=torch.float64)
        left = sphereface_psi_from_cos(torch.cos(joint - 1e-9), m)
        right = sphereface_psi_from_cos(torch.cos(joint + 1e-9), m)
        assert abs(left.item() - right.item()) < 1e-6


def test_psi_m1_is_cos():
    theta = torch.linspace(0, math.pi, 101, dtype=torch.float64)
    assert torch.allclose(sphereface_psi_from_cos(torch.cos(theta), 1), torch.cos(theta))


def test_annealed_lambda():
    assert annealed_lambda(0, 1500.0, 0.1, 5.0) == 1500.0
    assert annealed_lambda(10, 1500.0, 0.1, 5.0) == pytest.approx(750.0)
    assert annealed_lambda(10**7, 1500.0, 0.1, 5.0) == 5.0
    crit = build_criterion("asoftmax", K)
    assert crit.lambda_at(10) == pytest.approx(750.0)


def test_asoftmax_target_logit_by_hand():
    out, y = make_output(), make_labels()
    step = 90  # lambda = 1500 / 10 = 150
    crit = build_criterion("asoftmax", K)
    modified = asoftmax_logits(out.logits, out.features, y, 4, crit.lambda_at(step))
    lam = 150.0
    for i in range(B):
        x_norm = out.features[i].norm().item()
        for j in range(K):
            cos = (out.features[i] @ out.head_weight[j]).item() / x_norm
            if j == int(y[i]):
                theta = math.acos(cos)
                expected = x_norm * (lam * cos + psi_reference(theta, 4)) / (1 + lam)
            else:
                expected = x_norm * cos  # non-target logits unchanged
            assert modified[i, j].item() == pytest.approx(expected, rel=1e-9, abs=1e-9)
    result = crit(out, y, step=step)
    assert torch.allclose(result.loss, F.cross_entropy(modified, y))
    assert result.parts["lambda_a"].item() == pytest.approx(150.0)
    assert torch.allclose(result.parts["ce"], F.cross_entropy(out.logits, y))
    assert result.loss > result.parts["ce"]  # the margin makes the target harder


def test_asoftmax_refuses_linear_head():
    out = make_output(cosine=False)
    with torch.no_grad():
        out.head_weight.mul_(3.0)
    with pytest.raises(ValueError, match="cosine head"):
        build_criterion("asoftmax", K)(out, make_labels())


def test_asoftmax_gradient_finite_at_cos_one():
    # a feature exactly along its class vector: acos has an infinite derivative there
    w = F.normalize(torch.randn(K, C, dtype=torch.float64), dim=1).requires_grad_()
    x = (w.detach()[[0, 1]] * 3).requires_grad_()
    out = ModelOutput(logits=x @ w.T, attention=None, features=x, feature_map=torch.zeros(2, C, 1, 1), head_weight=w)
    loss = build_criterion("asoftmax", K)(out, torch.tensor([0, 1]), step=10**6).loss
    loss.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(w.grad).all()
