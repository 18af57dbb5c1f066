"""ccloss.losses.ce: plain cross-entropy, and the focal loss against a hand formula."""

import math

import pytest
import torch
from torch.nn import functional as F

from ccloss.losses import build_criterion
from ccloss.losses.ce import FocalLoss, focal_loss

from .helpers import K, make_labels, make_output


def test_ce_is_cross_entropy():
    out, y = make_output(cam=False, cosine=False), make_labels()
    result = build_criterion("ce", K)(out, y)
    assert torch.allclose(result.loss, F.cross_entropy(out.logits, y))
    assert set(result.parts) == {"ce"}


def focal_reference(logits, labels, gamma, alpha):
    total = 0.0
    for i in range(logits.shape[0]):
        row = logits[i].tolist()
        top = max(row)
        log_z = top + math.log(sum(math.exp(v - top) for v in row))
        log_pt = row[int(labels[i])] - log_z
        total += -alpha * (1 - math.exp(log_pt)) ** gamma * log_pt
    return total / logits.shape[0]


@pytest.mark.parametrize("gamma,alpha", [(2.0, 1.0), (0.5, 0.25), (5.0, 2.0)])
def test_focal_against_hand_formula(gamma, alpha):
    out, y = make_output(), make_labels()
    logits = out.logits * 3
    value = focal_loss(logits, y, gamma, alpha)
    assert value.item() == pytest.approx(focal_reference(logits.detach(), y, gamma, alpha), rel=1e-10)
    crit = build_criterion("focal", K, gamma=gamma, alpha=alpha)
    out.logits = logits
    result = crit(out, y)
    assert torch.allclose(result.loss, value)
    assert set(result.parts) == {"ce", "focal"}


def test_focal_gamma0_is_ce():
    out, y = make_output(), make_labels()
    value = build_criterion("focal", K, gamma=0, alpha=1)(out, y).loss
    assert torch.allclose(value, F.cross_entropy(out.logits, y))


def test_focal_default_matches_method():
    assert FocalLoss.defaults == {"gamma": 2.0, "alpha": 1.0}
