"""Tests of ccloss.losses: every objective against an independent reference, plus the registry."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from ccloss import losses as L
from ccloss.cc_loss import CCLoss
from ccloss.models import ModelOutput

K, C, B, H, W = 5, 8, 12, 4, 4


def make_output(
    *, batch=B, classes=K, channels=C, cam=True, cosine=True, fmap_channels=None, seed=0, dtype=torch.float64
):
    """A hand-built ModelOutput whose tensors are leaves (requires_grad) and consistent:
    logits = features @ head_weight.T (the cosine head when ``cosine``)."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, channels, generator=g, dtype=dtype).requires_grad_()
    raw_w = torch.randn(classes, channels, generator=g, dtype=dtype)
    head_weight = (F.normalize(raw_w, dim=1) if cosine else raw_w).requires_grad_()
    logits = features @ head_weight.T
    attention = torch.rand(batch, channels, generator=g, dtype=dtype).requires_grad_() if cam else None
    fc = fmap_channels if fmap_channels is not None else channels
    feature_map = torch.randn(batch, fc, H, W, generator=g, dtype=dtype).relu().requires_grad_()
    return ModelOutput(
        logits=logits, attention=attention, features=features, feature_map=feature_map, head_weight=head_weight
    )


def make_labels(batch=B, classes=K, seed=1):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (batch,), generator=g)
    labels[:classes] = torch.arange(classes)  # every class present
    return labels


# ------------------------------------------------------------------------------------ CE / CC


def test_ce_is_cross_entropy():
    out, y = make_output(cam=False, cosine=False), make_labels()
    result = L.build_criterion("ce", K)(out, y)
    assert torch.allclose(result.loss, F.cross_entropy(out.logits, y))
    assert set(result.parts) == {"ce"}


def test_cc_criterion_is_ce_plus_lam_cc():
    out, y = make_output(cosine=False), make_labels()
    crit = L.build_criterion("cc", K, lam=0.7, form="log_ratio", group_size=6)
    assert isinstance(crit.cc, CCLoss) and crit.cc.form == "log_ratio" and crit.cc.group_size == 6
    result = crit(out, y)
    reference = CCLoss(form="log_ratio", group_size=6).statistics(out.attention, y)
    expected = F.cross_entropy(out.logits, y) + 0.7 * reference.loss
    assert torch.allclose(result.loss, expected)
    assert set(result.parts) == {"ce", "cc", "d_intra", "d_inter"}
    assert torch.allclose(result.parts["cc"], reference.loss)
    assert torch.allclose(result.parts["d_intra"], reference.d_intra)
    assert not any(p.requires_grad for p in result.parts.values())


def test_cc_without_attention_says_why():
    out = make_output(cam=False)
    with pytest.raises(ValueError, match="channel attention"):
        L.build_criterion("cc", K)(out, make_labels())


# ------------------------------------------------------------------------------------ Focal


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
    value = L.focal_loss(logits, y, gamma, alpha)
    assert value.item() == pytest.approx(focal_reference(logits.detach(), y, gamma, alpha), rel=1e-10)
    crit = L.build_criterion("focal", K, gamma=gamma, alpha=alpha)
    out.logits = logits
    result = crit(out, y)
    assert torch.allclose(result.loss, value)
    assert set(result.parts) == {"ce", "focal"}


def test_focal_gamma0_is_ce():
    out, y = make_output(), make_labels()
    value = L.build_criterion("focal", K, gamma=0, alpha=1)(out, y).loss
    assert torch.allclose(value, F.cross_entropy(out.logits, y))


def test_focal_default_matches_method():
    assert L.FocalLoss.defaults == {"gamma": 2.0, "alpha": 1.0}


# ------------------------------------------------------------------------------------ A-Softmax


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
    psi = L.sphereface_psi(theta, m)
    reference = torch.tensor([psi_reference(t, m) for t in theta.tolist()], dtype=torch.float64)
    assert torch.allclose(psi, reference, atol=1e-12)
    # the Chebyshev form used in training agrees
    from_cos = L.sphereface_psi_from_cos(torch.cos(theta), m)
    assert torch.allclose(from_cos, reference, atol=1e-9)
    # monotonic decrease, from 1 at 0 to 1 - 2m at pi
    assert (psi[1:] - psi[:-1] < 1e-12).all()
    assert psi[0].item() == pytest.approx(1.0)
    assert psi[-1].item() == pytest.approx(1.0 - 2 * m)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_psi_continuous_at_joints(m):
    for k in range(1, m):
        joint = torch.tensor(k * math.pi / m, dtype=torch.float64)
        left = L.sphereface_psi(joint - 1e-9, m)
        right = L.sphereface_psi(joint + 1e-9, m)
        assert abs(left.item() - right.item()) < 1e-7


def test_psi_m1_is_cos():
    theta = torch.linspace(0, math.pi, 101, dtype=torch.float64)
    assert torch.allclose(L.sphereface_psi(theta, 1), torch.cos(theta))


def test_annealed_lambda():
    assert L.annealed_lambda(0) == 1500.0
    assert L.annealed_lambda(10) == pytest.approx(750.0)
    assert L.annealed_lambda(10**7) == 5.0
    crit = L.build_criterion("asoftmax", K)
    assert crit.lambda_at(10) == pytest.approx(750.0)


def test_asoftmax_target_logit_by_hand():
    out, y = make_output(), make_labels()
    step = 90  # lambda = 1500 / 10 = 150
    crit = L.build_criterion("asoftmax", K)
    modified = L.asoftmax_logits(out.logits, out.features, y, 4, crit.lambda_at(step))
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
        L.build_criterion("asoftmax", K)(out, make_labels())


# ------------------------------------------------------------------------------------ MC-Loss


def test_mc_diversity_extremes():
    xi, classes, size = 3, 2, 4
    spread = torch.zeros(2, classes * xi, size, size)
    same = torch.zeros(2, classes * xi, size, size)
    for c in range(classes * xi):
        spread[:, c].view(2, -1)[:, c % xi] = 100.0  # each channel of a group peaks elsewhere
        same[:, c, 1, 2] = 100.0  # all channels peak at one position
    assert L.mc_diversity(spread, classes, xi).item() == pytest.approx(xi, abs=1e-6)
    assert L.mc_diversity(same, classes, xi).item() == pytest.approx(1.0, abs=1e-6)
    uniform = torch.zeros(1, classes * xi, size, size)
    assert L.mc_diversity(uniform, classes, xi).item() == pytest.approx(1.0)


def test_mc_mask_deterministic_and_counts():
    a = L.mc_channel_mask(7, 5, 0.5, generator=torch.Generator().manual_seed(3))
    b = L.mc_channel_mask(7, 5, 0.5, generator=torch.Generator().manual_seed(3))
    c = L.mc_channel_mask(7, 5, 0.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (35,) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert (a.view(7, 5).sum(dim=1) == 5 - 2).all()  # floor(5 * 0.5) = 2 dropped per group
    assert (L.mc_channel_mask(4, 3, 0.5).view(4, 3).sum(1) == 2).all()  # the official 2 of 3
    assert (L.mc_channel_mask(4, 3, 0.0).view(-1) == 1).all()
    # the global RNG is the default source
    torch.manual_seed(11)
    first = L.mc_channel_mask(6, 4, 0.5)
    torch.manual_seed(11)
    assert torch.equal(first, L.mc_channel_mask(6, 4, 0.5))


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
    mask = L.mc_channel_mask(K, xi, 0.5, generator=torch.Generator().manual_seed(0)).double()
    fast = L.mc_discriminality(out.feature_map, y, K, xi, mask)
    slow = discriminality_loop(out.feature_map.detach(), y, K, xi, mask)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-10)


def test_mcloss_criterion_formula_and_generator():
    xi = 3
    out, y = make_output(fmap_channels=K * xi), make_labels()
    crit = L.MCLoss(K, xi=xi, generator=torch.Generator().manual_seed(5))
    result = crit(out, y)
    mask = L.mc_channel_mask(K, xi, 0.5, generator=torch.Generator().manual_seed(5))
    dis = L.mc_discriminality(out.feature_map, y, K, xi, mask)
    div = L.mc_diversity(out.feature_map, K, xi)
    expected = F.cross_entropy(out.logits, y) + 1.5 * dis + 20.0 * (1 - div / xi)
    assert torch.allclose(result.loss, expected)
    assert set(result.parts) == {"ce", "mc_dis", "mc_div", "mc_diversity"}
    assert 1.0 <= result.parts["mc_diversity"].item() <= xi


def test_mcloss_too_few_channels():
    out = make_output(fmap_channels=K * 3 - 1)
    with pytest.raises(ValueError, match="last_stage_width=15"):
        L.build_criterion("mcloss", K, xi=3)(out, make_labels())


def test_mcloss_xi_choice():
    assert L.mcloss_xi_for("digits", 10) == 51 and L.mcloss_xi_for("MNIST", 10) == 51
    assert L.mcloss_xi_for("CIFAR-100", 100) == 5
    assert L.mcloss_xi_for("cars_196", 196) == 3
    assert L.mcloss_xi_for(None, 200) == 3  # the official CUB-200 setting
    for dataset, xi in L.MCLOSS_XI.items():  # the table follows the rule
        classes = {"digits": 10, "mnist": 10, "cifar100": 100, "cars196": 196}[dataset]
        assert xi == L.mcloss_xi_for(None, classes)
    assert L.build_criterion("mcloss", 100).xi == 5
    assert L.build_criterion("mcloss", 10).needs.channels_per_class == 51


# ------------------------------------------------------------------------------------ ICAL / FICAL


def test_ical_against_pair_loop():
    out, y = make_output(), make_labels()
    w = out.head_weight.detach()
    total = 0.0
    for i in range(K):
        for j in range(K):
            total += F.cosine_similarity(w[i], w[j], dim=0).item()
    assert L.ical_penalty(out.head_weight).item() == pytest.approx(total / K**2, rel=1e-10)
    result = L.build_criterion("ical", K, lam=2.5)(out, y)
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
    assert L.fical_penalty(out.head_weight, uniform).item() == pytest.approx(reference, rel=1e-10)
    # ICAL = 1/K + (K-1)/K * off-diagonal mean
    assert L.ical_penalty(out.head_weight).item() == pytest.approx(1 / K + (K - 1) / K * reference)
    # the criterion with its initial buffer and no update (no_grad) gives the same
    crit = L.build_criterion("fical", K, lam=3.0).double()
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
    assert L.fical_penalty(out.head_weight, confusion).item() == pytest.approx(num / den, rel=1e-10)


def test_fical_ema_update_and_state_dict():
    crit = L.build_criterion("fical", K, momentum=0.5).double()
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
    crit0 = L.build_criterion("fical", K, momentum="0").double()
    crit0(out, y)
    assert torch.allclose(crit0.confusion[2], probs[3:6].mean(dim=0))
    # eval mode leaves the buffer alone; a state_dict round trip restores it
    crit.eval()
    saved = crit.confusion.clone()
    crit(out, y)
    assert torch.equal(crit.confusion, saved)
    fresh = L.build_criterion("fical", K, momentum=0.5).double()
    fresh.load_state_dict(crit.state_dict())
    assert torch.equal(fresh.confusion, saved)


# ------------------------------------------------------------------------------------ all losses


@pytest.mark.parametrize("name", list(L.LOSSES))
def test_every_loss_finite_with_gradients(name):
    xi = 2
    hparams = {"xi": xi} if name == "mcloss" else {}
    out, y = make_output(fmap_channels=K * xi, dtype=torch.float32), make_labels()
    crit = L.build_criterion(name, K, **hparams)
    result = crit(out, y, step=3)
    assert result.loss.dim() == 0 and torch.isfinite(result.loss)
    assert "ce" in result.parts and all(torch.isfinite(v) and v.dim() == 0 for v in result.parts.values())
    result.loss.backward()
    leaves = {"features": out.features, "head_weight": out.head_weight}
    if name == "cc":
        leaves["attention"] = out.attention
    if name == "mcloss":
        leaves["feature_map"] = out.feature_map
    for key, leaf in leaves.items():
        assert leaf.grad is not None, f"{name}: no gradient for {key}"
        assert torch.isfinite(leaf.grad).all(), f"{name}: non-finite gradient for {key}"
        assert leaf.grad.abs().sum() > 0, f"{name}: zero gradient for {key}"


@pytest.mark.parametrize("name", list(L.LOSSES))
def test_every_loss_under_bf16_logits(name):
    out, y = make_output(fmap_channels=K * 2, dtype=torch.float32), make_labels()
    out.logits = out.logits.bfloat16()
    hparams = {"xi": 2} if name == "mcloss" else {}
    result = L.build_criterion(name, K, **hparams)(out, y)
    assert result.loss.dtype == torch.float32 and torch.isfinite(result.loss)


def test_asoftmax_gradient_finite_at_cos_one():
    # a feature exactly along its class vector: acos has an infinite derivative there
    w = F.normalize(torch.randn(K, C, dtype=torch.float64), dim=1).requires_grad_()
    x = (w.detach()[[0, 1]] * 3).requires_grad_()
    out = ModelOutput(logits=x @ w.T, attention=None, features=x, feature_map=torch.zeros(2, C, 1, 1), head_weight=w)
    loss = L.build_criterion("asoftmax", K)(out, torch.tensor([0, 1]), step=10**6).loss
    loss.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(w.grad).all()


# ------------------------------------------------------------------------------------ registry


def test_registry_names():
    assert list(L.LOSSES) == ["ce", "cc", "focal", "asoftmax", "mcloss", "ical", "fical"]
    assert L.PAPER_NAMES == {
        "ce": "CE", "cc": "CC-Loss", "focal": "Focal", "asoftmax": "A-Softmax", "mcloss": "MC-Loss",
        "ical": "ICAL", "fical": "FICAL",
    }
    for name, cls in L.LOSSES.items():
        assert cls.name == name and isinstance(cls.defaults, dict)
        assert cls.__doc__ and len(cls.__doc__) > 50
    assert "reconstruction from the abstract" in L.FICALoss.__doc__
    assert isinstance(L.build_criterion("CC-Loss", K), L.CCCriterion)  # paper spelling works


def test_unknown_name_lists_names():
    with pytest.raises(ValueError) as info:
        L.build_criterion("arcface", K)
    for name in L.LOSSES:
        assert name in str(info.value)


def test_unknown_hparam_lists_defaults():
    with pytest.raises(ValueError) as info:
        L.build_criterion("focal", K, gama=2)
    message = str(info.value)
    assert "'gama'" in message and "gamma=2.0" in message and "alpha=1.0" in message


def test_hparam_coercion():
    crit = L.build_criterion("cc", K, lam="0.5", squared="false", eps="1e-4", group_size="16", form="sums")
    assert crit.lam == 0.5 and crit.squared is False and crit.eps == 1e-4 and crit.group_size == 16
    assert crit.cc.squared is False and crit.cc.group_size == 16
    assert L.build_criterion("cc", K, group_size="None").group_size is None
    assert L.build_criterion("asoftmax", K, margin="3").margin == 3
    assert L.build_criterion("asoftmax", K, margin=2.0).margin == 2
    assert L.build_criterion("ical", K, lam=2).lam == 2.0 and isinstance(L.build_criterion("ical", K, lam=2).lam, float)
    assert L.build_criterion("mcloss", K, xi="4").xi == 4
    with pytest.raises(ValueError, match="margin"):
        L.build_criterion("asoftmax", K, margin="2.5")
    with pytest.raises(ValueError, match="lam"):
        L.build_criterion("ical", K, lam="abc")
    with pytest.raises(ValueError, match="squared"):
        L.build_criterion("cc", K, squared="maybe")
    with pytest.raises(ValueError, match="form"):
        L.build_criterion("cc", K, form="bogus")
    with pytest.raises(ValueError, match="momentum"):
        L.build_criterion("fical", K, momentum=1.0)


def test_model_kwargs_adjustments():
    kw = dict(default_last_width=512)
    assert L.model_kwargs_for(L.build_criterion("ce", 10), 10, cam=False, **kw) == {
        "cam": False, "head": "linear", "last_stage_width": 512,
    }
    assert L.model_kwargs_for("asoftmax", 10, cam=False, **kw)["head"] == "cosine"
    assert L.model_kwargs_for("ical", 10, cam=True, head="cosine", **kw)["head"] == "cosine"
    assert L.model_kwargs_for("fical", 10, cam=False, **kw)["head"] == "cosine"
    assert L.model_kwargs_for("cc", 10, cam=True, **kw) == {"cam": True, "head": "linear", "last_stage_width": 512}
    assert L.model_kwargs_for("ce", 10, cam=False, head="cosine", last_stage_width=256, **kw) == {
        "cam": False, "head": "cosine", "last_stage_width": 256,
    }
    mc = L.build_criterion("mcloss", 10)
    assert L.model_kwargs_for(mc, 10, cam=False, **kw)["last_stage_width"] == 510
    assert L.model_kwargs_for(L.build_criterion("mcloss", 196), 196, cam=False, **kw)["last_stage_width"] == 588
    assert L.model_kwargs_for(mc, 10, cam=False, last_stage_width=600, **kw)["last_stage_width"] == 600


def test_model_kwargs_refusals():
    kw = dict(default_last_width=512)
    with pytest.raises(ValueError, match="CC-Loss needs the channel attention vectors: drop --no-cam"):
        L.model_kwargs_for("cc", 10, cam=False, **kw)
    with pytest.raises(ValueError, match="A-Softmax needs the cosine head"):
        L.model_kwargs_for("asoftmax", 10, cam=False, head="linear", **kw)
    with pytest.raises(ValueError, match="ICAL needs the cosine head"):
        L.model_kwargs_for("ical", 10, cam=False, head="linear", **kw)
    with pytest.raises(ValueError, match=r"MC-Loss with xi=3 needs a last stage of at least 10 x 3 = 30"):
        L.model_kwargs_for(L.build_criterion("mcloss", 10, xi=3), 10, cam=False, last_stage_width=29, **kw)
    with pytest.raises(ValueError, match="unknown head"):
        L.model_kwargs_for("ce", 10, cam=False, head="arc", **kw)


def test_describe_losses():
    text = L.describe_losses()
    for name, paper in L.PAPER_NAMES.items():
        assert name in text and paper in text
    assert "reconstruction from the abstract" in text
    assert "lambda_base=1500.0" in text and "mask_fraction=0.5" in text


def test_with_real_model():
    """The contract with ccloss.models: build_model(**model_kwargs_for(...)) works for every loss."""
    from ccloss.models import build_model
    import inspect

    params = inspect.signature(build_model).parameters
    torch.manual_seed(0)
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    for name in L.LOSSES:
        crit = L.build_criterion(name, 10, **({"xi": 2} if name == "mcloss" else {}))
        kwargs = L.model_kwargs_for(crit, 10, cam=(name == "cc"), default_last_width=64)
        extra = {}
        if "width_mult" in params:
            extra["width_mult"] = 0.125
        if "in_channels" in params:
            extra["in_channels"] = 1
        model = build_model("resnet18", num_classes=10, **kwargs, **extra)
        result = crit(model(x), y)
        result.loss.backward()
        assert torch.isfinite(result.loss), name
