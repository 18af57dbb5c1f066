"""ccloss.losses.ical: ICAL (CE + lam * mean pairwise cosine of the class vectors) and FICAL (confusion-weighted,
with its EMA confusion buffer)."""

import pytest
import torch
from torch.nn import functional as F

from ccloss.losses import build_criterion
from ccloss.losses.ical import fical_penalty, ical_penalty

from .helpers import K, make_labels, make_output


def test_ical_against_pair_loop():
    out, y = make_output(), make_labels()
    w = out.head_weight.detach()
    total = 0.0
    for i in range(K):
        for j in range(K):
            total += F.cosine_similarity(w[i], w[j], dim=0).item()
    assert ical_penalty(out.head_weight).item() == pytest.approx(total / K**2, rel=1e-10)
    result = build_criterion("ical", K, lam=2.5)(out, y)
    assert torch.allclose(result.loss, F.cross_entropy(out.logits, y) + 2.5 * total / K**2)
    assert set(result.parts) == {"ce", "ical"}


def offdiag_mean_cos(w):
    total, count = 0.0, 0
    for i in range(w.shape[0]):
        for j in range(w.shape[0]):
            if i != j:
                total += F.cosine_similarity(w[i], w[j], dim=0).item()
                count += 1
    return total / count


def test_fical_uniform_weights_is_ical_pairwise():
    out = make_output()
    uniform = torch.full((K, K), 1.0 / K, dtype=torch.float64)
    reference = offdiag_mean_cos(out.head_weight.detach())
    assert fical_penalty(out.head_weight, uniform).item() == pytest.approx(reference, rel=1e-10)
    # ICAL = 1/K + (K-1)/K * off-diagonal mean
    assert ical_penalty(out.head_weight).item() == pytest.approx(1 / K + (K - 1) / K * reference)
    # the criterion with its initial buffer and no update (no_grad) gives the same
    crit = build_criterion("fical", K, lam=3.0).double()
    with torch.no_grad():
        result = crit(out, make_labels())
    assert result.parts["fical"].item() == pytest.approx(reference, rel=1e-10)
    assert torch.allclose(crit.confusion, uniform)


def test_fical_weights_by_loop():
    out = make_output()
    g = torch.Generator().manual_seed(2)
    confusion = torch.rand(K, K, generator=g, dtype=torch.float64)
    w = out.head_weight.detach()
    num = den = 0.0
    for i in range(K):
        for j in range(K):
            if i != j:
                weight = 0.5 * (confusion[i, j] + confusion[j, i]).item()
                num += weight * F.cosine_similarity(w[i], w[j], dim=0).item()
                den += weight
    assert fical_penalty(out.head_weight, confusion).item() == pytest.approx(num / den, rel=1e-10)


def test_fical_ema_update_and_state_dict():
    crit = build_criterion("fical", K, momentum=0.5).double()
    assert "confusion" in crit.state_dict()
    out = make_output()
    y = torch.tensor([0, 0, 1, 2, 2, 2])  # classes 3 and 4 absent
    out.logits = out.logits[:6]
    probs = F.softmax(out.logits.detach(), dim=1)
    before = crit.confusion.clone()
    crit(out, y)
    for i, rows in {0: [0, 1], 1: [2], 2: [3, 4, 5]}.items():
        expected = 0.5 * before[i] + 0.5 * probs[rows].mean(dim=0)
        assert torch.allclose(crit.confusion[i], expected)
    assert torch.equal(crit.confusion[3:], before[3:])  # absent classes keep their row
    # momentum 0: the batch only
    crit0 = build_criterion("fical", K, momentum=0).double()
    crit0(out, y)
    assert torch.allclose(crit0.confusion[2], probs[3:6].mean(dim=0))
    # eval mode leaves the buffer alone; a state_dict round trip restores it
    crit.eval()
    saved = crit.confusion.clone()
    crit(out, y)
    assert torch.equal(crit.confusion, saved)
    fresh = build_criterion("fical", K, momentum=0.5).double()
    fresh.load_state_dict(crit.state_dict())
    assert torch.equal(fresh.confusion, saved)
