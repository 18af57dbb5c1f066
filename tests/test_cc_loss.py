"""CC-Loss against a slow, obvious reference (Python loops over pairs, float64)."""
import itertools
import math

import pytest
import torch

from ccloss import FORMS, CCLoss, cc_statistics, pairwise_distances
from ccloss.cc_loss import dataset_intra_inter


def reference_cc(a, labels, form="ratio", squared=True, eps=1e-3, group_size=None):
    """Loop over groups and pairs; the definitions of METHOD.md written out by hand."""
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
        if form == "ratio":
            v = d_intra / (d_inter + eps)
        elif form == "sums":
            v = s_intra / (s_inter + eps)
        elif form == "difference":
            v = d_intra - d_inter
        else:
            v = math.log(1 + d_intra / (d_inter + eps))
        values.append(v)
        intras.append(d_intra)
        inters.append(d_inter)
    if not values:
        return 0.0, 0.0, 0.0
    return sum(values) / len(values), sum(intras) / len(intras), sum(inters) / len(inters)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("batch,classes,group_size", [(2, 2, None), (7, 3, None), (16, 4, None), (16, 4, 5),
                                                      (33, 10, 8), (12, 2, 2), (9, 3, 4)])
def test_matches_loop_reference(form, squared, batch, classes, group_size):
    gen = torch.Generator().manual_seed(batch * 31 + classes)
    a = torch.rand(batch, 6, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    stats = cc_statistics(a, labels, form=form, squared=squared, group_size=group_size)
    loss, d_intra, d_inter = reference_cc(a, labels, form, squared, 1e-3, group_size)
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
def test_gradcheck(form, squared, group_size):
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(8, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 0, 1, 2])
    loss = CCLoss(form=form, squared=squared, group_size=group_size)
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


def test_dataset_intra_inter_matches_pairwise():
    gen = torch.Generator().manual_seed(4)
    a = torch.rand(60, 7, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 5, (60,), generator=gen)
    stats = cc_statistics(a, labels, eps=0.0)
    whole = dataset_intra_inter(a, labels)
    assert whole["d_intra"] == pytest.approx(stats.d_intra.item(), rel=1e-9)
    assert whole["d_inter"] == pytest.approx(stats.d_inter.item(), rel=1e-9)
    assert whole["ratio"] == pytest.approx(stats.loss.item(), rel=1e-9)


def test_dataset_intra_inter_flags_collapsed_vectors():
    """Vectors shrunk onto one point: the ratio of the shrunk set equals the original's (the
    ratio is scale-invariant) but the set is flagged; identical vectors give NaN, not 0."""
    gen = torch.Generator().manual_seed(5)
    a = torch.rand(40, 6, generator=gen, dtype=torch.float64)
    labels = torch.arange(40) % 4
    spread = dataset_intra_inter(a, labels)
    assert spread["collapsed"] is False and spread["d_inter"] > 1e-3
    centre = a.mean(0, keepdim=True)
    shrunk = dataset_intra_inter(centre + 1e-3 * (a - centre), labels)
    assert shrunk["ratio"] == pytest.approx(spread["ratio"], rel=1e-6)
    assert shrunk["d_inter"] == pytest.approx(spread["d_inter"] * 1e-6, rel=1e-6)
    assert shrunk["collapsed"] is True
    same = dataset_intra_inter(torch.full((10, 6), 0.5, dtype=torch.float64), torch.arange(10) % 2)
    assert math.isnan(same["ratio"]) and same["collapsed"] is True and same["d_inter"] == 0.0
    assert dataset_intra_inter(a, labels, collapse_tol=10.0)["collapsed"] is True
    with pytest.raises(ValueError, match="collapse_tol"):
        dataset_intra_inter(a, labels, collapse_tol=-1.0)


@pytest.mark.parametrize("attention,labels,message", [
    (torch.rand(4), torch.zeros(4, dtype=torch.long), "2-D"),
    (torch.rand(4, 3, 2), torch.zeros(4, dtype=torch.long), "2-D"),
    (torch.rand(4, 3), torch.zeros(5, dtype=torch.long), "does not match"),
    (torch.rand(4, 3), torch.zeros(4), "integer"),
    (torch.rand(4, 3), torch.zeros(4, dtype=torch.bool), "integer"),
    (torch.rand(4, 3), torch.zeros(4, 1, dtype=torch.long), "1-D"),
    (torch.rand(0, 3), torch.zeros(0, dtype=torch.long), "empty"),
    (torch.ones(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long), "floating-point"),
])
def test_bad_inputs(attention, labels, message):
    with pytest.raises(ValueError, match=message):
        CCLoss()(attention, labels)


@pytest.mark.parametrize("kwargs,message", [
    ({"form": "cosine"}, "ratio, sums, difference, log_ratio"),
    ({"group_size": 1}, ">= 2"),
    ({"group_size": 0}, ">= 2"),
    ({"group_size": 2.5}, ">= 2"),
    ({"group_size": True}, ">= 2"),
    ({"eps": -1.0}, "eps"),
    ({"eps": float("nan")}, "eps"),
    ({"squared": "yes"}, "squared"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CCLoss(**kwargs)


def test_gather_hook_is_applied():
    a = torch.rand(4, 3, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1])
    loss = CCLoss()
    loss.gather = lambda x, y: (torch.cat([x, x + 1]), torch.cat([y, y]))
    assert loss(a, labels).item() == pytest.approx(cc_statistics(torch.cat([a, a + 1]), torch.cat([labels, labels])).loss.item())
