"""ccloss.losses.ce: plain cross-entropy."""

import torch
from torch.nn import functional as F

from ccloss.losses import build_criterion

from .helpers import K, make_labels, make_output


def test_ce_is_cross_entropy():
    out, y = make_output(cam=False, cosine=False), make_labels()
    result = build_criterion("ce", K)(out, y)
    assert torch.allclose(result.loss, F.cross_entropy(out.logits, y))
    assert set(result.parts) == {"ce"}
