"""ccloss.losses.mcloss: MC-Loss's channel mask, discriminality, diversity and xi."""

import pytest
import torch
from torch.nn import functional as F

from ccloss.losses import build_criterion
from ccloss.losses.mcloss import MCLoss, mc_channel_mask, mc_discriminality, mc_diversity, mc_xi

from .helpers import K, make_labels, make_output


def test_mc_diversity_extremes():
    xi, classes, size = 3, 2, 4
    spread = torch.zeros(2, classes * xi, size, size)
    same = torch.zeros(2, classes * xi, size, size)
    for c in range(classes * xi):
        spread[:, c].view(2, -1)[:, c % xi] = 100.0  # each channel of a group peaks elsewhere
        same[:, c, 1, 2] = 100.0  # all channels peak at one position
    assert mc_diversity(spread, classes, xi).item() == pytest.approx(xi, abs=1e-6)
    assert mc_diversity(same, classes, xi).item() == pytest.approx(1.0, abs=1e-6)
    uniform = torch.zeros(1, classes * xi, size, size)
    assert mc_diversity(uniform, classes, xi).item() == pytest.approx(1.0)


def test_mc_mask_deterministic_and_counts():
    a = mc_channel_mask(7, 5, 0.5, generator=torch.Generator().manual_seed(3))
    b = mc_channel_mask(7, 5, 0.5, generator=torch.Generator().manual_seed(3))
    c = mc_channel_mask(7, 5, 0.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (35,) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert (a.view(7, 5).sum(dim=1) == 5 - 2).all()  # floor(5 * 0.5) = 2 dropped per group
    assert (mc_channel_mask(4, 3, 0.5).view(4, 3).sum(1) == 2).all()  # the official 2 of 3
    assert (mc_channel_mask(4, 3, 0.0).view(-1) == 1).all()
    # the global RNG is the default source
    torch.manual_seed(11)
    first = mc_channel_mask(6, 4, 0.5)
    torch.manual_seed(11)
    assert torch.equal(first, mc_channel_mask(6, 4, 0.5))


def discriminality_loop(fmap, labels, classes, xi, mask):
    b = fmap.shape[0]
    scores = torch.zeros(b, classes, dtype=fmap.dtype)
    for n in range(b):
        for k in range(classes):
            best = None
            for c in range(k * xi, (k + 1) * xi):
                channel = fmap[n, c] * mask[c]
                best = channel if best is None else torch.maximum(best, channel)
            scores[n, k] = best.mean()
    total = 0.0
    for n in range(b):
        total += -(scores[n, labels[n]] - torch.logsumexp(scores[n], 0))
    return total / b


def test_mc_discriminality_against_loop():
    xi = 3
    out, y = make_output(fmap_channels=K * xi + 2), make_labels()  # 2 extra channels are ignored
    mask = mc_channel_mask(K, xi, 0.5, generator=torch.Generator().manual_seed(0)).double()
    fast = mc_discriminality(out.feature_map, y, K, xi, mask)
    slow = discriminality_loop(out.feature_map.detach(), y, K, xi, mask)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-10)


def test_mcloss_criterion_formula_and_generator():
    xi = 3
    out, y = make_output(fmap_channels=K * xi), make_labels()
    crit = MCLoss(K, xi=xi, generator=torch.Generator().manual_seed(5))
    result = crit(out, y)
    mask = mc_channel_mask(K, xi, 0.5, generator=torch.Generator().manual_seed(5))
    dis = mc_discriminality(out.feature_map, y, K, xi, mask)
    div = mc_diversity(out.feature_map, K, xi)
    expected = F.cross_entropy(out.logits, y) + 1.5 * dis + 20.0 * (1 - div / xi)
    assert torch.allclose(result.loss, expected)
    assert set(result.parts) == {"ce", "mc_dis", "mc_div_loss", "mc_diversity"}
    assert 1.0 <= result.parts["mc_diversity"].item() <= xi


def test_mcloss_too_few_channels():
    out = make_output(fmap_channels=K * 3 - 1)
    with pytest.raises(ValueError, match="last_stage_width=15"):
        build_criterion("mcloss", K, xi=3)(out, make_labels())


def test_mcloss_xi_rule_and_default():
    """xi = max(3, width // K): 512 channels give 51 for 10 classes, 5 for 100; 3 for 196 (the official CUB-200
    floor); xi=None takes C // K of the feature map it is given."""
    assert (mc_xi(512, 10), mc_xi(512, 100), mc_xi(512, 196), mc_xi(512, 200), mc_xi(128, 10)) == (51, 5, 3, 3, 12)
    out, y = make_output(fmap_channels=K * 3 + 1), make_labels()  # C // K = 3, one channel left over
    inferred = MCLoss(K, generator=torch.Generator().manual_seed(1))(out, y)
    explicit = MCLoss(K, xi=3, generator=torch.Generator().manual_seed(1))(out, y)
    assert build_criterion("mcloss", K).xi is None and torch.equal(inferred.loss, explicit.loss)
    with pytest.raises(ValueError, match="at least 5 channels"):
        MCLoss(K)(make_output(fmap_channels=K - 1), y)
