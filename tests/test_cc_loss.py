"""CC-Loss against a slow, obvious reference (Python loops over pairs, float64)."""

import itertools
import math

import pytest
import torch

from ccloss import FORMS, NORMALIZATIONS, CCLoss, cc_ratio, cc_statistics, pairwise_distances
from ccloss.cc_loss import normalize_attention


def reference_pair_form(dist, members, form, eps, tau=0.1):
    """``eps`` here is the group's floor e of the denominators (eps * d_all + 1e-12, or a fixed eps)."""
    """A class-pair form of one group by hand: dist(i, j), members = {class: [sample indices]}."""
    classes = sorted(members)
    intra = {}
    for c in classes:
        m = members[c]
        if len(m) >= 2:
            intra[c] = sum(dist(i, j) for i in m for j in m if i != j) / (len(m) * (len(m) - 1))
    terms = []
    for ca, cb in itertools.combinations(classes, 2):
        spreads = [intra[c] for c in (ca, cb) if c in intra]
        if not spreads:
            continue  # neither class has a pair: the class pair does not count
        spread = sum(spreads) / len(spreads)
        d_ab = sum(dist(i, j) for i in members[ca] for j in members[cb]) / (len(members[ca]) * len(members[cb]))
        terms.append((spread, d_ab))
    if not terms:
        return 0.0
    if form == "pair_ratio":
        return sum(s / (d + eps) for s, d in terms) / len(terms)
    if form == "pair_log_ratio":
        return sum(math.log((s + eps) / (d + eps)) for s, d in terms) / len(terms)
    return tau * math.log(sum(math.exp(s / (d + eps) / tau) for s, d in terms) / len(terms))  # pair_softmax


def reference_cc(a, labels, form="ratio", squared=True, eps=1e-3, group_size=None, relative=True):
    """Loop over groups and pairs; the definitions of docs/paper_choices.md (and of ccloss.cc_forms for the
    class-pair forms) written out by hand. The denominators get e = eps * d_all + 1e-12 with d_all the group's
    mean distance over all pairs i != j (``relative``), else e = eps."""
    a = a.double().tolist()
    labels = [int(v) for v in labels]
    n = len(a)
    g = group_size or n
    values, intras, inters = [], [], []
    for start in range(0, n, g):
        idx = list(range(start, min(start + g, n)))
        if len(idx) < 2:
            continue
        s_intra = s_inter = 0.0
        c_intra = c_inter = 0
        for i in idx:
            for j in idx:
                if i == j:
                    continue
                d = sum((x - y) ** 2 for x, y in zip(a[i], a[j]))
                if not squared:
                    d = math.sqrt(d)
                if labels[i] == labels[j]:
                    s_intra += d
                    c_intra += 1
                else:
                    s_inter += d
                    c_inter += 1
        d_intra = s_intra / c_intra if c_intra else 0.0
        d_inter = s_inter / c_inter if c_inter else 0.0
        d_all = (s_intra + s_inter) / (c_intra + c_inter)
        floor = eps * d_all + 1e-12 if relative else eps

        def dist(i, j):
            d = sum((x - y) ** 2 for x, y in zip(a[i], a[j]))
            return d if squared else math.sqrt(d)

        members = {c: [i for i in idx if labels[i] == c] for c in {labels[i] for i in idx}}
        if form.startswith("pair_"):
            v = reference_pair_form(dist, members, form, floor)
        elif form == "ratio":
            v = d_intra / (d_inter + floor)
        elif form == "sums":
            v = s_intra / (s_inter + floor)
        elif form == "difference":
            v = d_intra - d_inter
        else:
            v = math.log(1 + d_intra / (d_inter + floor))
        values.append(v)
        intras.append(d_intra)
        inters.append(d_inter)
    if not values:
        return 0.0, 0.0, 0.0
    return sum(values) / len(values), sum(intras) / len(intras), sum(inters) / len(inters)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("relative,eps", [(True, 1e-3), (False, 1e-3), (True, 0.5)])
@pytest.mark.parametrize(
    "batch,classes,group_size",
    [(2, 2, None), (7, 3, None), (16, 4, None), (16, 4, 5), (33, 10, 8), (12, 2, 2), (9, 3, 4)],
)
def test_matches_loop_reference(form, squared, relative, eps, batch, classes, group_size):
    gen = torch.Generator().manual_seed(batch * 31 + classes)
    a = torch.rand(batch, 6, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    options = dict(form=form, squared=squared, group_size=group_size, eps=eps, relative_eps=relative)
    stats = cc_statistics(a, labels, **options)
    loss, d_intra, d_inter = reference_cc(a, labels, form, squared, eps, group_size, relative)
    assert stats.loss.item() == pytest.approx(loss, abs=1e-6, rel=1e-6)
    assert stats.d_intra.item() == pytest.approx(d_intra, abs=1e-6, rel=1e-6)
    assert stats.d_inter.item() == pytest.approx(d_inter, abs=1e-6, rel=1e-6)


def test_distance_matrix_matches_loop_symmetric_zero_diagonal():
    a = torch.rand(10, 5, dtype=torch.float64)
    d = pairwise_distances(a)
    ref = torch.tensor([[float(((a[i] - a[j]) ** 2).sum()) for j in range(10)] for i in range(10)], dtype=torch.float64)
    torch.testing.assert_close(d, ref, atol=1e-12, rtol=0)
    assert torch.equal(d, d.T)
    assert torch.all(d.diagonal() == 0)
    torch.testing.assert_close(pairwise_distances(a, squared=False), ref.sqrt(), atol=1e-9, rtol=0)


def test_float32_diagonal_exactly_zero_and_close_to_float64():
    a = torch.rand(128, 512)
    d32 = pairwise_distances(a)
    d64 = pairwise_distances(a.double())
    assert torch.all(d32.diagonal() == 0)
    assert (d32.double() - d64).abs().max().item() < 1e-3


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("group_size", [None, 3])
@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_gradcheck(form, squared, group_size, normalize):
    """Finite differences against autograd, with a fixed eps (the relative eps detaches d_all: next test)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(8, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 0, 1, 2])
    loss = CCLoss(form=form, squared=squared, group_size=group_size, normalize=normalize, relative_eps=False)
    assert torch.autograd.gradcheck(lambda x: loss(x, labels), (a,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("group_size", [None, 3])
def test_relative_eps_is_a_fixed_eps_of_the_batchs_own_scale_for_the_gradient(form, group_size):
    """d_all is detached: the value and the gradient equal those of a fixed eps = eps * d_all + 1e-12 (per group)."""
    gen = torch.Generator().manual_seed(5)
    a = torch.rand(9, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 0, 1, 2, 2])
    relative = cc_statistics(a, labels, form=form, eps=0.01)  # one group: the whole batch
    (grad,) = torch.autograd.grad(relative.loss, a)
    if group_size is None:
        d = relative.distances.detach()
        floor = 0.01 * d.sum().item() / (9 * 8) + 1e-12
        fixed = cc_statistics(a, labels, form=form, eps=floor, relative_eps=False).loss
        (expected,) = torch.autograd.grad(fixed, a)
        assert relative.loss.item() == pytest.approx(fixed.item(), rel=1e-12)
        torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    loss = CCLoss(form=form, group_size=group_size, eps=0.0)  # eps 0: the floor is a constant, gradcheck applies
    assert torch.autograd.gradcheck(lambda x: loss(x, labels), (a,), eps=1e-6, atol=1e-5)


def test_zero_when_classes_share_one_vector_and_differ():
    centres = torch.eye(4, 16, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3] * 5)
    a = centres[labels]
    assert CCLoss()(a, labels).item() == pytest.approx(0.0, abs=1e-9)


def test_about_one_for_random_vectors():
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(512, 64, generator=gen)
    labels = torch.randint(0, 10, (512,), generator=gen)
    assert CCLoss()(a, labels).item() == pytest.approx(1.0, abs=0.05)


def test_invariant_to_permuting_the_batch():
    gen = torch.Generator().manual_seed(2)
    a = torch.rand(20, 8, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 4, (20,), generator=gen)
    perm = torch.randperm(20, generator=gen)
    for form in FORMS:
        loss = CCLoss(form=form)
        assert loss(a[perm], labels[perm]).item() == pytest.approx(loss(a, labels).item(), rel=1e-12)


def test_group_size_at_least_batch_equals_whole_batch():
    a = torch.rand(10, 4, dtype=torch.float64)
    labels = torch.randint(0, 3, (10,))
    assert CCLoss(group_size=10)(a, labels).item() == pytest.approx(CCLoss()(a, labels).item(), rel=1e-12)
    assert CCLoss(group_size=64)(a, labels).item() == pytest.approx(CCLoss()(a, labels).item(), rel=1e-12)


def test_groups_ignore_cross_group_pairs():
    # two groups of 4: moving the second group far away changes nothing inside groups
    a = torch.rand(8, 3, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    b = a.clone()
    b[4:] += 100.0
    loss = CCLoss(group_size=4)
    assert loss(a, labels).item() == pytest.approx(loss(b, labels).item(), rel=1e-9)
    assert CCLoss()(a, labels).item() != pytest.approx(CCLoss()(b, labels).item(), rel=1e-3)


CASES = {
    "one sample": (torch.rand(1, 8), torch.tensor([3])),
    "one class": (torch.rand(6, 8), torch.zeros(6, dtype=torch.long)),
    "no same-class pair": (torch.rand(5, 8), torch.arange(5)),
    "identical vectors": (torch.full((6, 8), 0.5), torch.tensor([0, 0, 1, 1, 2, 2])),
    "identical within class": (torch.eye(3, 8)[torch.tensor([0, 0, 1, 1, 2, 2])], torch.tensor([0, 0, 1, 1, 2, 2])),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("group_size", [None, 2])
def test_finite_loss_and_gradients_on_edge_cases(case, form, squared, group_size):
    a, labels = CASES[case]
    a = a.clone().requires_grad_(True)
    loss = CCLoss(form=form, squared=squared, group_size=group_size)(a, labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(a.grad).all()


def test_single_sample_loss_is_zero_and_in_graph():
    a = torch.rand(1, 4, requires_grad=True)
    loss = CCLoss()(a, torch.tensor([0]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(a.grad, torch.zeros_like(a))


def test_gradient_pulls_same_class_together_and_pushes_classes_apart():
    torch.manual_seed(0)
    a = torch.rand(12, 6, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2] * 4)
    before = cc_statistics(a, labels)
    before.loss.backward()
    with torch.no_grad():
        moved = a - 0.05 * a.grad
    after = cc_statistics(moved, labels)
    assert after.loss < before.loss
    assert after.d_intra / after.d_inter < before.d_intra / before.d_inter


def test_bfloat16_autocast_matches_float64():
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(128, 512, generator=gen)
    labels = torch.randint(0, 10, (128,), generator=gen)
    ref = cc_statistics(a.double(), labels).loss.item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = CCLoss()(a, labels)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref, rel=1e-4)
    # bf16 input vectors (what a bf16 network emits) are upcast before the Gram matrix
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = CCLoss()(a.bfloat16(), labels)
    ref16 = cc_statistics(a.bfloat16().double(), labels).loss.item()
    assert torch.isfinite(out16) and out16.item() == pytest.approx(ref16, rel=1e-4)


@pytest.mark.parametrize(
    "attention,labels,message",
    [
        (torch.rand(4), torch.zeros(4, dtype=torch.long), "2-D"),
        (torch.rand(4, 3, 2), torch.zeros(4, dtype=torch.long), "2-D"),
        (torch.rand(4, 3), torch.zeros(5, dtype=torch.long), "does not match"),
        (torch.rand(4, 3), torch.zeros(4), "integer"),
        (torch.rand(4, 3), torch.zeros(4, dtype=torch.bool), "integer"),
        (torch.rand(4, 3), torch.zeros(4, 1, dtype=torch.long), "1-D"),
        (torch.rand(0, 3), torch.zeros(0, dtype=torch.long), "empty"),
        (torch.ones(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long), "floating-point"),
    ],
)
def test_bad_inputs(attention, labels, message):
    with pytest.raises(ValueError, match=message):
        CCLoss()(attention, labels)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"form": "cosine"}, "unknown form 'cosine'; valid: " + ", ".join(FORMS)),
        (
            {"group_size": 1},
            "group_size must be None (the whole batch) or an integer >= 2 (a group needs a pair), got 1",
        ),
        ({"group_size": 0}, ">= 2"),
        ({"group_size": 2.5}, ">= 2"),
        ({"group_size": True}, "a pair), got True"),
        ({"eps": -1.0}, "eps must be a finite number >= 0, got -1.0"),
        ({"eps": float("nan")}, "eps must be a finite number >= 0, got nan"),
        ({"squared": "yes"}, "squared must be bool, got 'yes'"),
        ({"tau": 0}, "tau must be a finite number > 0, got 0"),
        ({"ratio": True}, "unknown option(s) 'ratio' for CC-Loss; valid, with defaults: form='pair_ratio'"),
    ],
)
def test_bad_options(kwargs, message):
    for call in (lambda: CCLoss(**kwargs), lambda: cc_statistics(torch.rand(2, 3), torch.tensor([0, 1]), **kwargs)):
        with pytest.raises(ValueError) as error:
            call()
        assert message in str(error.value)


def test_gather_hook_is_applied():
    a = torch.rand(4, 3, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1])
    loss = CCLoss()
    loss.gather = lambda x, y: (torch.cat([x, x + 1]), torch.cat([y, y]))
    assert loss(a, labels).item() == pytest.approx(
        cc_statistics(torch.cat([a, a + 1]), torch.cat([labels, labels])).loss.item()
    )


# --------------------------------------------------------------------------------------------
# cc_ratio: the plain definition
# --------------------------------------------------------------------------------------------


def loop_ratio(a, labels, eps=1e-3):
    """d_intra / (d_inter + eps * d_all + 1e-12) over ordered pairs i != j, written out with Python floats."""
    rows, labels = a.double().tolist(), [int(v) for v in labels]
    intra, inter = [], []
    for i, j in itertools.permutations(range(len(rows)), 2):
        d = sum((x - y) ** 2 for x, y in zip(rows[i], rows[j]))
        (intra if labels[i] == labels[j] else inter).append(d)
    d_intra = sum(intra) / len(intra) if intra else 0.0
    d_inter = sum(inter) / len(inter) if inter else 0.0
    d_all = (sum(intra) + sum(inter)) / (len(intra) + len(inter))
    return d_intra / (d_inter + eps * d_all + 1e-12)


@pytest.mark.parametrize("batch,classes,eps", [(2, 2, 1e-3), (9, 3, 1e-3), (24, 5, 0.0), (17, 4, 0.5)])
def test_cc_ratio_matches_loop_over_pairs(batch, classes, eps):
    gen = torch.Generator().manual_seed(10 * batch + classes)
    a = torch.rand(batch, 5, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    labels[:2] = torch.tensor([0, 1])  # at least one inter pair
    assert cc_ratio(a, labels, eps=eps).item() == pytest.approx(loop_ratio(a, labels, eps), rel=1e-9, abs=1e-12)
    # the short definition is what cc_statistics computes with its defaults
    paper = cc_statistics(a, labels, form="ratio", eps=eps).loss.item()
    assert cc_ratio(a, labels, eps=eps).item() == pytest.approx(paper, rel=1e-9)


def test_cc_ratio_hand_computed_value():
    # intra pairs (0,1), (2,3): squared distances 1, 1 -> d_intra = 1;
    # inter pairs (0,2) 4, (0,3) 9, (1,2) 5, (1,3) 10 -> d_inter = 28 / 4 = 7; all pairs: d_all = 30 / 6 = 5
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    assert cc_ratio(a, labels, eps=0.0).item() == pytest.approx(1 / 7, rel=1e-12)
    assert cc_ratio(a, labels).item() == pytest.approx(1 / (7 + 0.005 + 1e-12), rel=1e-12)
    fixed = cc_statistics(a, labels, form="ratio", relative_eps=False).loss.item()
    assert fixed == pytest.approx(1 / 7.001, rel=1e-12)  # the paper's fixed eps
    assert cc_ratio(a.float(), labels).dtype == torch.float32


def test_cc_ratio_edge_cases_and_gradient():
    a = torch.rand(5, 3, dtype=torch.float64)
    # no same-class pair: d_intra = 0
    assert cc_ratio(a, torch.arange(5)).item() == 0.0
    # one class: no inter pair, d_inter = 0 and d_all = d_intra, so the ratio is about 1 / eps
    one = torch.zeros(5, dtype=torch.long)
    assert cc_ratio(a, one, eps=0.5).item() == pytest.approx(2.0, rel=1e-9)
    assert cc_ratio(a, one, eps=0.5).item() == pytest.approx(loop_ratio(a, one, 0.5), rel=1e-9)
    # a batch of one: zero, still in the graph
    single = torch.rand(1, 3, requires_grad=True)
    loss = cc_ratio(single, torch.tensor([2]))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(single.grad, torch.zeros_like(single))
    x = torch.rand(7, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 1, 2, 2, 0])
    assert torch.autograd.gradcheck(lambda t: cc_ratio(t, labels, eps=0.0), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    "attention,labels,message",
    [
        (torch.rand(4), torch.zeros(4, dtype=torch.long), "2-D"),
        (torch.rand(4, 3), torch.zeros(3, dtype=torch.long), "does not match"),
        (torch.rand(4, 3), torch.zeros(4), "integer"),
        (torch.rand(0, 3), torch.zeros(0, dtype=torch.long), "empty"),
    ],
)
def test_cc_ratio_bad_inputs(attention, labels, message):
    with pytest.raises(ValueError, match=message):
        cc_ratio(attention, labels)


# --------------------------------------------------------------------------------------------
# normalize: none | unit | standardize
# --------------------------------------------------------------------------------------------


def unit_by_hand(a):
    """Each row divided by its L2 norm."""
    return torch.tensor([[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in a.tolist()], dtype=a.dtype)


def standardize_by_hand(a):
    """Rows minus the batch mean, divided by one scalar s, s^2 = mean_i ||a_i - m||^2 + 1e-12 (the
    docstring of normalize_attention: not a per-channel std)."""
    rows = a.tolist()
    n, c = len(rows), len(rows[0])
    mean = [sum(row[k] for row in rows) / n for k in range(c)]
    centred = [[row[k] - mean[k] for k in range(c)] for row in rows]
    s = math.sqrt(sum(sum(v * v for v in row) for row in centred) / n + 1e-12)
    return torch.tensor([[v / s for v in row] for row in centred], dtype=a.dtype)


def test_normalizations_constant():
    assert NORMALIZATIONS == ("none", "unit", "standardize")


@pytest.mark.parametrize(
    "normalize,transform", [("none", lambda a: a), ("unit", unit_by_hand), ("standardize", standardize_by_hand)]
)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("group_size", [None, 4])
def test_normalize_equals_plain_loss_on_transformed_vectors(normalize, transform, form, group_size):
    gen = torch.Generator().manual_seed(7)
    a = torch.rand(14, 6, generator=gen, dtype=torch.float64) * 3 - 1
    labels = torch.randint(0, 3, (14,), generator=gen)
    stats = cc_statistics(a, labels, form=form, group_size=group_size, normalize=normalize)
    # the normalisation uses the whole batch, the groups come after it
    loss, d_intra, d_inter = reference_cc(transform(a), labels, form, True, 1e-3, group_size)
    assert stats.loss.item() == pytest.approx(loss, rel=1e-9, abs=1e-12)
    assert stats.d_intra.item() == pytest.approx(d_intra, rel=1e-9, abs=1e-12)
    assert stats.d_inter.item() == pytest.approx(d_inter, rel=1e-9, abs=1e-12)
    assert CCLoss(form=form, group_size=group_size, normalize=normalize)(a, labels).item() == pytest.approx(
        loss, rel=1e-9
    )


def test_normalize_attention_by_hand():
    gen = torch.Generator().manual_seed(8)
    a = torch.randn(9, 5, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(normalize_attention(a, "unit"), unit_by_hand(a), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(normalize_attention(a, "standardize"), standardize_by_hand(a), rtol=1e-12, atol=1e-12)
    assert normalize_attention(a, "none") is a or torch.equal(normalize_attention(a, "none"), a)
    # unit: every norm 1; standardize: centred, mean squared distance to the centre 1
    torch.testing.assert_close(normalize_attention(a, "unit").norm(dim=1), torch.ones(9, dtype=torch.float64))
    s = normalize_attention(a, "standardize")
    torch.testing.assert_close(s.mean(dim=0), torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)
    assert s.pow(2).sum(dim=1).mean().item() == pytest.approx(1.0, rel=1e-9)
    # float32 (and anything else but float64) is computed in float32
    assert normalize_attention(a.half(), "unit").dtype == torch.float32


@pytest.mark.parametrize("scale", [3.7, 0.01, 100.0, -2.0])
@pytest.mark.parametrize("form", FORMS)
def test_unit_and_standardize_are_scale_invariant_none_is_not(scale, form):
    gen = torch.Generator().manual_seed(9)
    a = torch.rand(16, 8, generator=gen, dtype=torch.float64)
    labels = torch.arange(16) % 4
    for normalize in ("unit", "standardize"):
        loss = CCLoss(form=form, normalize=normalize)
        assert loss(scale * a, labels).item() == pytest.approx(loss(a, labels).item(), rel=1e-7, abs=1e-10)
    if form != "difference" and scale > 0:
        # the paper's fixed eps breaks the invariance: shrinking the vectors makes eps dominate the denominator
        fixed = CCLoss(form=form, relative_eps=False)
        assert fixed(0.01 * a, labels).item() != pytest.approx(fixed(a, labels).item(), rel=1e-2)
    if form == "difference":
        none = CCLoss(form=form)
        assert none(scale * a, labels).item() == pytest.approx(scale**2 * none(a, labels).item(), rel=1e-9)


def test_standardize_uses_one_scale_for_all_channels():
    """A shift is removed, one common scale is removed, but rescaling single channels changes
    the geometry (a per-channel z-score would remove that too)."""
    gen = torch.Generator().manual_seed(11)
    a = torch.rand(20, 4, generator=gen, dtype=torch.float64)
    labels = torch.arange(20) % 3
    loss = CCLoss(normalize="standardize")
    assert loss(a + 5.0, labels).item() == pytest.approx(loss(a, labels).item(), rel=1e-9)
    stretched = a * torch.tensor([1.0, 10.0, 0.1, 3.0], dtype=torch.float64)
    assert loss(stretched, labels).item() != pytest.approx(loss(a, labels).item(), rel=1e-3)
    # unit normalisation is not shift invariant
    unit = CCLoss(normalize="unit")
    assert unit(a + 5.0, labels).item() != pytest.approx(unit(a, labels).item(), rel=1e-3)


@pytest.mark.parametrize("normalize", ["unit", "standardize"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_normalize_finite_on_edge_cases(normalize, case):
    a, labels = CASES[case]
    a = a.clone().requires_grad_(True)
    loss = CCLoss(normalize=normalize)(a, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a.grad).all()


def test_normalize_zero_vector_and_identical_batch():
    # unit: a zero vector stays zero (no 0/0); standardize: a batch of identical vectors gives zeros
    a = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    out = normalize_attention(a, "unit")
    torch.testing.assert_close(out.detach(), torch.tensor([[0.0, 0.0], [0.6, 0.8]], dtype=torch.float64))
    out.sum().backward()
    assert torch.isfinite(a.grad).all()
    same = torch.full((4, 3), 0.5, dtype=torch.float64, requires_grad=True)
    z = normalize_attention(same, "standardize")
    assert torch.equal(z.detach(), torch.zeros(4, 3, dtype=torch.float64))
    z.sum().backward()
    assert torch.isfinite(same.grad).all()


@pytest.mark.parametrize("normalize", ["unit", "standardize"])
def test_normalize_under_bfloat16_autocast_matches_float64(normalize):
    gen = torch.Generator().manual_seed(13)
    a = torch.rand(64, 128, generator=gen)
    labels = torch.randint(0, 8, (64,), generator=gen)
    ref = cc_statistics(a.double(), labels, normalize=normalize).loss.item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = CCLoss(normalize=normalize)(a, labels)
    assert out.dtype == torch.float32 and out.item() == pytest.approx(ref, rel=1e-4)


def test_unknown_normalize_lists_the_valid_ones():
    valid = ", ".join(NORMALIZATIONS)
    with pytest.raises(ValueError, match="CC-Loss: unknown normalize 'l2'") as error:
        CCLoss(normalize="l2")
    assert valid in str(error.value)
    a, labels = torch.rand(4, 3), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match=valid):
        cc_statistics(a, labels, normalize="unit_norm")
    with pytest.raises(ValueError, match=valid):
        normalize_attention(a, "Unit")
    with pytest.raises(ValueError, match=valid):
        CCLoss(normalize=None)


@pytest.mark.parametrize("form", [f for f in FORMS if f != "difference"])
@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("group_size", [None, 5])
@pytest.mark.parametrize("spread", [1e-3, 0.02, 7.0, 300.0])
def test_relative_eps_makes_the_loss_invariant_to_the_attentions_spread(form, squared, group_size, spread):
    """a -> m + s (a - m), m the batch mean: the loss does not change (float32, as a network emits it), also where
    the attention lives in a narrow band around 0.5 (d_inter ~ 1e-6 for s = 1e-3), unlike the fixed eps."""
    gen = torch.Generator().manual_seed(21)
    a = torch.rand(20, 16, generator=gen)
    labels = torch.arange(20) % 4
    m = a.mean(dim=0, keepdim=True)
    loss = CCLoss(form=form, squared=squared, group_size=group_size)
    assert loss(m + spread * (a - m), labels).item() == pytest.approx(loss(a, labels).item(), rel=2e-4, abs=5e-5)
    if spread == 1e-3 and squared:
        fixed = CCLoss(form=form, squared=squared, group_size=group_size, relative_eps=False)
        assert fixed(m + spread * (a - m), labels).item() != pytest.approx(fixed(a, labels).item(), rel=1e-2)


def test_identical_vectors_one_class_and_one_sample_give_zero_or_finite_values():
    """The absolute floor 1e-12: identical vectors give 0 (not 0 / 0) with zero gradients; one class gives
    d_intra / (eps d_intra) = 1 / eps; one sample 0; every form, gradients finite."""
    same = torch.full((6, 4), 0.5, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    for form in FORMS:
        loss = CCLoss(form=form)(same, labels)
        loss.backward()
        assert loss.item() == 0.0 and torch.isfinite(same.grad).all(), form
    one_class = torch.rand(5, 3, dtype=torch.float64)
    assert CCLoss(form="ratio")(one_class, torch.zeros(5, dtype=torch.long)).item() == pytest.approx(1e3, rel=1e-6)
    assert CCLoss()(torch.rand(1, 3), torch.tensor([4])).item() == 0.0
