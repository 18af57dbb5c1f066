"""ccloss.losses.ical: CE + lam * mean pairwise cosine of the class vectors."""

import pytest
import torch
from torch.nn import functional as F

from ccloss.losses import build_criterion
from ccloss.losses.ical import ical_penalty

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
