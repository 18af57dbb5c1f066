"""The class measures against slow references (loops written from the definitions), hand-computed
values, and the sets that game CC-Loss's own statistic (a few classes far away, the rest merged)."""

import math
from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from ccloss import analysis
from ccloss.measures import (
    MAX_STORED_CLASSES,
    class_distance_matrix,
    class_structure,
    geometry_from_distances,
    knn_accuracy,
    pair_geometry,
    pair_separation,
    precision_at_1_and_map_at_r,
    probe_accuracy,
    unseparated_pairs,
)
from ccloss.metrics import STRUCTURE_KEYS, dataset_intra_inter


def blobs(centres, per_class, spread, seed=0):
    """Gaussian blobs around ``centres`` (K x C), ``per_class`` samples each."""
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, dtype=np.float64)
    x = np.concatenate([c + spread * rng.standard_normal((per_class, centres.shape[1])) for c in centres])
    return x, np.repeat(np.arange(len(centres)), per_class)


def noisy_classes(n, k, dims, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = rng.normal(size=(n, dims))
    x[:, 0] += y
    return x, y


# ---------------------------------------------------------------------------------------------
# precision@1 and MAP@R (Musgrave et al. 2020) against loops
# ---------------------------------------------------------------------------------------------


def retrieval_by_hand(train_x, train_y, eval_x, eval_y):
    """Per query: every distance, a sort, R = references of its class; P@1 = rel(1) and
    AP@R = (1/R) sum_{i<=R} P(i) rel(i); queries whose class has no reference are left out."""
    p1, ap = [], []
    for x, y in zip(eval_x, eval_y):
        r = sum(1 for label in train_y if label == y)
        if r == 0:
            continue
        dist = [float(((x - t) ** 2).sum()) for t in train_x]
        ranked = [int(train_y[i]) for i in sorted(range(len(dist)), key=lambda i: dist[i])]
        p1.append(1.0 if ranked[0] == y else 0.0)
        hits, total = 0, 0.0
        for i in range(r):
            if ranked[i] == y:
                hits += 1
                total += hits / (i + 1)
        ap.append(total / r)
    return 100.0 * sum(p1) / len(p1), 100.0 * sum(ap) / len(ap)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_at_1_and_map_at_r_match_loops(seed):
    train_x, train_y = noisy_classes(50, 4, 5, seed)
    eval_x, eval_y = noisy_classes(20, 5, 5, seed + 10)  # class 4 has no reference: left out
    assert (eval_y == 4).any() and not (train_y == 4).any()
    got = precision_at_1_and_map_at_r(train_x, train_y, eval_x, eval_y)
    p1, map_r = retrieval_by_hand(train_x, train_y, eval_x, eval_y)
    assert got["precision_at_1"] == pytest.approx(p1) and got["map_at_r"] == pytest.approx(map_r)
    assert 0 < map_r < 100  # neither trivial nor perfect


def test_map_at_r_by_hand():
    """References 0 (class 0), 1 (class 1), 2 (class 0); queries 0.9 and 2.1 of class 0, R = 2.
    Query 0.9 ranks 1, 0, 2: rel = (0, 1), AP@R = (0 + 1/2) / 2 = 0.25, P@1 = 0.
    Query 2.1 ranks 2, 1, 0: rel = (1, 0), AP@R = (1 + 0) / 2 = 0.5, P@1 = 1."""
    got = precision_at_1_and_map_at_r([[0.0], [1.0], [2.0]], [0, 1, 0], [[0.9], [2.1]], [0, 0])
    assert got == pytest.approx({"precision_at_1": 50.0, "map_at_r": 37.5})


def test_retrieval_of_a_narrow_band_is_exact():
    """Attention in [0.45, 0.55] that differs between classes by ~1e-4 (a torchvision trunk): PML
    computes in float32, so the measure centres the vectors first; the loop is float64."""
    rng = np.random.default_rng(4)
    base = rng.uniform(0.45, 0.55, 64)
    train_x, train_y = noisy_classes(60, 3, 64, 5)
    eval_x, eval_y = noisy_classes(30, 3, 64, 6)
    train_x, eval_x = base + 1e-4 * train_x, base + 1e-4 * eval_x
    got = precision_at_1_and_map_at_r(train_x, train_y, eval_x, eval_y)
    assert (got["precision_at_1"], got["map_at_r"]) == pytest.approx(
        retrieval_by_hand(train_x, train_y, eval_x, eval_y)
    )


# ---------------------------------------------------------------------------------------------
# the held-out per-pair classifier
# ---------------------------------------------------------------------------------------------


def pairs_by_hand(train_x, train_y, eval_x, eval_y, threshold=95.0):
    """One LDA per pair, fit on the two classes' training vectors; balanced accuracy = mean recall."""
    accuracy = {}
    classes = sorted(set(train_y.tolist()))
    for a in classes:
        for b in classes:
            if a < b and (eval_y == a).any() and (eval_y == b).any():
                keep = (train_y == a) | (train_y == b)
                lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(train_x[keep], train_y[keep])
                recalls = []
                for c in (a, b):
                    predicted = lda.predict(eval_x[eval_y == c])
                    recalls.append(sum(1 for p in predicted if p == c) / len(predicted))
                accuracy[(a, b)] = 100.0 * (recalls[0] + recalls[1]) / 2
    below = sorted((v, pair) for pair, v in accuracy.items() if v < threshold)
    return accuracy, [list(pair) for _, pair in below]


def test_unseparated_pairs_match_a_loop():
    train_x, train_y = noisy_classes(120, 5, 4, 7)
    eval_x, eval_y = noisy_classes(60, 5, 4, 8)
    got = unseparated_pairs(train_x, train_y, eval_x, eval_y)
    accuracy, below = pairs_by_hand(train_x, train_y, eval_x, eval_y)
    for (a, b), value in accuracy.items():
        assert got.matrix[a, b] == pytest.approx(value) and got.matrix[b, a] == pytest.approx(value)
    assert got.below_list == below and got.below == len(below) and got.pairs == len(accuracy) == 10
    assert 0 < got.below < 10  # the neighbours on axis 0 overlap, distant classes do not
    assert got.minimum == pytest.approx(min(accuracy.values()))


def test_two_gaussians_far_apart_are_separated_and_identical_ones_are_not():
    far_train, far_eval = (
        blobs([[0.0] * 8, [8.0] + [0.0] * 7], 50, 1.0, 0),
        blobs([[0.0] * 8, [8.0] + [0.0] * 7], 50, 1.0, 1),
    )
    far = unseparated_pairs(*far_train, *far_eval)
    assert far.matrix[0, 1] == 100.0 and far.below == 0 and far.below_list == []
    same_train, same_eval = blobs([[0.0] * 8] * 2, 50, 1.0, 2), blobs([[0.0] * 8] * 2, 50, 1.0, 3)
    same = unseparated_pairs(*same_train, *same_eval)
    assert 30.0 < same.matrix[0, 1] < 70.0 and same.below == 1 and same.below_list == [[0, 1]]


def test_high_dimensional_classes_far_apart_are_separated_though_their_geometry_is_below_2():
    """Issue 25: for two Gaussian classes s = 1 + delta^2 / (2d); at d = 128, 12 sigma apart, s ~ 1.56,
    while the held-out classifier separates them perfectly."""
    centres = np.zeros((2, 128))
    centres[1, 0] = 12.0
    train, evaluation = blobs(centres, 200, 1.0, 0), blobs(centres, 200, 1.0, 1)
    assert pair_geometry(*evaluation).matrix[0, 1] == pytest.approx(1 + 144 / 256, abs=0.05)
    assert pair_geometry(*evaluation).below == 1
    assert unseparated_pairs(*train, *evaluation).matrix[0, 1] == 100.0


def test_a_pair_missing_from_the_eval_split_is_not_measured():
    train_x, train_y = blobs(np.eye(3) * 5, 10, 0.5)
    eval_x, eval_y = blobs(np.eye(3)[:2] * 5, 10, 0.5, 1)
    got = unseparated_pairs(train_x, train_y, eval_x, eval_y)
    assert got.pairs == 1 and math.isnan(got.matrix[0, 2]) and got.matrix[0, 1] == 100.0


@pytest.mark.parametrize(
    "train,evaluation,message",
    [
        ((np.zeros((4, 2)), np.array([0, 1, 0])), (np.zeros((2, 2)), np.array([0, 1])), "one label per vector"),
        ((np.zeros((4, 2)), np.array([0, 1, 0, 1])), (np.zeros((2, 2)), np.array([0])), "one label per vector"),
        ((np.zeros((4, 2)), np.array([3, 3, 3, 3])), (np.zeros((2, 2)), np.array([3, 3])), "1 class"),
        ((np.zeros((4, 2)), np.array([0, 1, 0, 1])), (np.zeros((2, 3)), np.array([0, 1])), "must match"),
    ],
)
def test_pairs_bad_input_says_what_is_wrong(train, evaluation, message):
    with pytest.raises(ValueError, match=message):
        unseparated_pairs(*train, *evaluation)


def test_retrieval_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="one label per vector"):
        precision_at_1_and_map_at_r(np.zeros((4, 2)), np.array([0, 1, 0]), np.zeros((2, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match="no evaluation class occurs in the training split"):
        precision_at_1_and_map_at_r(np.zeros((2, 2)), np.array([0, 0]), np.zeros((2, 2)), np.array([1, 1]))


# ---------------------------------------------------------------------------------------------
# k-NN and the linear probe
# ---------------------------------------------------------------------------------------------


def knn_by_hand(train_x, train_y, eval_x, eval_y, k):
    """Every distance, a stable sort, a vote; ties go to the smallest label."""
    correct = 0
    for x, y in zip(eval_x, eval_y):
        dist = [float(((x - t) ** 2).sum()) for t in train_x]
        nearest = sorted(range(len(dist)), key=lambda i: dist[i])[:k]
        votes = Counter(int(train_y[i]) for i in nearest)
        top = max(votes.values())
        correct += min(label for label, count in votes.items() if count == top) == int(y)
    return 100.0 * correct / len(eval_y)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_knn_matches_a_loop(k):
    train_x, train_y = noisy_classes(60, 4, 5, k)
    eval_x, eval_y = noisy_classes(25, 4, 5, k + 1)
    assert knn_accuracy(train_x, train_y, eval_x, eval_y, k=k) == pytest.approx(
        knn_by_hand(train_x, train_y, eval_x, eval_y, k)
    )


def test_knn_takes_tensors_and_caps_k():
    x, y = torch.tensor([[0.0], [0.1], [5.0]]), torch.tensor([0, 0, 1])
    # k = 10 > 3 training vectors: all three vote, class 0 wins everywhere
    assert knn_accuracy(x, y, torch.tensor([[0.05], [5.0]]), torch.tensor([0, 1]), k=10) == 50.0
    assert knn_accuracy(x, y, torch.tensor([[0.05], [5.0]]), torch.tensor([0, 1]), k=1) == 100.0


def reference_probe(train_x, train_y, eval_x, C=1.0):
    """Standardise, then minimise C * sum CE + 0.5 ||W||^2 (bias unpenalised) with L-BFGS in float64."""
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std[std == 0] = 1.0
    xt, yt = torch.tensor((train_x - mean) / std), torch.tensor(train_y)
    k = int(train_y.max()) + 1
    w = torch.zeros(xt.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], max_iter=5000, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = C * torch.nn.functional.cross_entropy(xt @ w + b, yt, reduction="sum") + 0.5 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (torch.tensor((eval_x - mean) / std) @ w.detach() + b.detach()).argmax(1).numpy()


@pytest.mark.parametrize("C", [1.0, 0.05])
def test_probe_matches_logistic_regression_by_hand(C):
    rng = np.random.default_rng(3)
    train_y, eval_y = rng.integers(0, 3, 150), rng.integers(0, 3, 60)
    train_x, eval_x = rng.normal(size=(150, 6)), rng.normal(size=(60, 6))
    train_x[:, :2] += train_y[:, None] * 0.8
    eval_x[:, :2] += eval_y[:, None] * 0.8
    expected = 100.0 * float((reference_probe(train_x, train_y, eval_x, C) == eval_y).mean())
    assert probe_accuracy(train_x, train_y, eval_x, eval_y, C=C) == pytest.approx(expected)
    assert 40.0 < expected < 100.0  # neither trivial nor perfect: the comparison means something


def test_probe_with_one_training_class_predicts_it():
    x = np.zeros((4, 2))
    assert probe_accuracy(x, np.array([2, 2, 2, 2]), x[:3], np.array([2, 2, 1])) == pytest.approx(200 / 3)


# ---------------------------------------------------------------------------------------------
# the class distance matrix and the pair geometry s_ab
# ---------------------------------------------------------------------------------------------


def distances_by_hand(x, y, k):
    out = np.full((k, k), np.nan)
    for a in range(k):
        for b in range(k):
            pairs = [(i, j) for i in range(len(y)) for j in range(len(y)) if y[i] == a and y[j] == b and i != j]
            if pairs:
                out[a, b] = sum(float(((x[i] - x[j]) ** 2).sum()) for i, j in pairs) / len(pairs)
    return out


def test_class_distance_matrix_matches_a_loop_and_is_the_one_of_analysis():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 4)) * 3 + 10  # off-centre: the centring must not change anything
    y = rng.integers(0, 5, 30)
    y[0] = 6  # a class with one sample (NaN diagonal); class 5 absent (NaN row), num_classes 8 (two more)
    got = class_distance_matrix(x, y, num_classes=8)
    np.testing.assert_allclose(got, distances_by_hand(x, y, 8), rtol=1e-10, equal_nan=True)
    assert np.isnan(got[6, 6]) and np.isnan(got[5]).all() and got.shape == (8, 8)
    assert analysis.class_distance_matrix is class_distance_matrix
    with pytest.raises(ValueError, match="below num_classes"):
        class_distance_matrix(x, y, num_classes=3)


def test_geometry_by_hand():
    # 1-D: a = {0, 2}, b = {10, 12}: D_aa = D_bb = 4, D_ab = (100 + 144 + 64 + 100) / 4 = 102
    geometry = pair_geometry(np.array([[0.0], [2.0], [10.0], [12.0]]), np.array([0, 0, 1, 1]))
    assert geometry.matrix[0, 1] == pytest.approx(102 / 4) and geometry.minimum == pytest.approx(25.5)
    assert (geometry.below, geometry.pairs, geometry.below_list) == (0, 1, [])
    # closer means: b = {1, 3}: D_ab = (1 + 9 + 1 + 1) / 4 = 3, s = 0.75 < 2
    close = pair_geometry(np.array([[0.0], [2.0], [1.0], [3.0]]), np.array([0, 0, 1, 1]))
    assert close.matrix[0, 1] == pytest.approx(0.75) and (close.below, close.below_list) == (1, [[0, 1]])
    assert (close.merged, close.merged_pairs) == (1, [[0, 1]])  # ccloss 0.4's names still read
    assert pair_separation is pair_geometry


def test_geometry_is_one_plus_mean_gap_over_spread():
    """s_ab = (||mu_a - mu_b||^2 + biased traces) / unbiased traces, exactly."""
    x, y = blobs([[0, 0, 0], [1.5, 0, 0]], per_class=40, spread=1.0, seed=2)
    a, b = x[y == 0], x[y == 1]
    gap = float(((a.mean(0) - b.mean(0)) ** 2).sum())
    traces = np.trace(np.cov(a.T)) + np.trace(np.cov(b.T))
    expected = (gap + traces * (len(a) - 1) / len(a)) / traces
    assert pair_geometry(x, y).matrix[0, 1] == pytest.approx(expected, rel=1e-10)


def test_single_points_coinciding_have_s_one_and_apart_infinite():
    x = np.array([[0.0, 1.0], [0.0, 1.0], [3.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    geometry = pair_geometry(x, np.array([0, 0, 1, 1, 2, 2]))
    assert math.isinf(geometry.matrix[0, 1]) and geometry.matrix[0, 2] == 1.0
    assert geometry.below_list == [[0, 2]]


def test_geometry_lists_the_smallest_first():
    geometry = geometry_from_distances(np.array([[1.0, 1.5, 3.0], [1.5, 1.0, 1.2], [3.0, 1.2, 1.0]]))
    assert geometry.below_list == [[1, 2], [0, 1]] and geometry.minimum == pytest.approx(1.2)
    labelled = geometry_from_distances(np.array([[1.0, 1.5], [1.5, 1.0]]), [4, 7], threshold=1.6)
    assert labelled.below_list == [[4, 7]] and labelled.minimum == pytest.approx(1.5)


# ---------------------------------------------------------------------------------------------
# the record, on sets that game the ratio
# ---------------------------------------------------------------------------------------------


def few_far_rest_merged(seed=0):
    """Classes 0-2 far from everything; classes 3-9 share one blob: what the default did (issue 19)."""
    centres = np.zeros((10, 8))
    centres[0, 0], centres[1, 1], centres[2, 2] = 30.0, 30.0, 30.0
    return blobs(centres, per_class=30, spread=0.3, seed=seed)


def all_separated(seed=0):
    """Every class its own corner of a simplex, at a modest distance."""
    return blobs(np.eye(10) * 3.0, per_class=30, spread=0.4, seed=seed)


def test_measures_catch_what_the_ratio_rewards():
    """A few classes far away and the rest merged: a *lower* intra/inter ratio than a set whose every
    class is separated; every independent measure ranks them the other way."""
    gamed_train, gamed_eval = few_far_rest_merged(0), few_far_rest_merged(1)
    honest_train, honest_eval = all_separated(0), all_separated(1)
    ratio = {
        name: dataset_intra_inter(torch.tensor(x), torch.tensor(y))["ratio"]
        for name, (x, y) in {"gamed": gamed_eval, "honest": honest_eval}.items()
    }
    assert ratio["gamed"] < ratio["honest"]
    gamed = class_structure(*gamed_train, *gamed_eval, split="val")
    honest = class_structure(*honest_train, *honest_eval, split="val")
    merged = [[a, b] for a in range(3, 10) for b in range(a + 1, 10)]  # the 7 merged classes: 21 pairs
    assert gamed["val_unseparated_pairs"] == 21 and sorted(gamed["val_unseparated_pair_list"]) == merged
    assert gamed["val_pair_geometry_below_2"] == 21 and sorted(gamed["val_pair_geometry_below_2_list"]) == merged
    assert honest["val_unseparated_pairs"] == 0 and honest["val_pair_accuracy_min"] >= 95.0
    assert honest["val_pair_geometry_below_2"] == 0 and honest["val_pair_geometry_min"] > 2
    for key in ("knn_acc", "probe_acc", "precision_at_1", "map_at_r"):
        assert gamed[f"val_{key}"] < 50 < 99 < honest[f"val_{key}"], key
    assert set(gamed) == {f"val_{key}" for key in STRUCTURE_KEYS}  # the keys metrics.py names


def test_a_collapse_is_every_pair_unseparated():
    x, y = np.full((40, 4), 0.5), np.arange(40) % 4
    record = class_structure(x, y, x, y, split="test")
    assert record["test_unseparated_pairs"] == record["test_pair_geometry_below_2"] == record["test_class_pairs"] == 6
    assert record["test_pair_geometry_min"] == 1.0 and record["test_probe_acc"] <= 25.0


def test_record_keeps_the_matrix_for_few_classes_only():
    x, y = all_separated()
    record = class_structure(x, y, x, y, split="test")
    assert record["test_classes"] == list(range(10)) and np.array(record["test_class_distances"]).shape == (10, 10)
    many = MAX_STORED_CLASSES + 1
    x, y = blobs(np.eye(many) * 3, per_class=3, spread=0.1)
    record = class_structure(x, y, x, y)
    assert "test_class_distances" not in record and record["test_class_pairs"] == many * (many - 1) // 2


@pytest.mark.parametrize(
    "vectors,labels,message",
    [
        (np.zeros((3,)), np.zeros(3, dtype=int), "2-D"),
        (np.zeros((3, 2)), np.zeros(2, dtype=int), "one label per vector"),
        (np.zeros((3, 2)), np.zeros(3), "integer class indices"),
        (np.zeros((3, 2)), np.array([0, -1, 0]), "non-negative"),
        (np.full((3, 2), np.nan), np.zeros(3, dtype=int), "NaN or Inf"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "at least one sample"),
    ],
)
def test_bad_input_says_what_is_wrong(vectors, labels, message):
    with pytest.raises(ValueError, match=message):
        pair_geometry(vectors, labels)
    with pytest.raises(ValueError, match=message):
        knn_accuracy(vectors, labels, np.zeros((1, 2)), np.zeros(1, dtype=int))


def test_train_and_eval_dimensions_must_match():
    with pytest.raises(ValueError, match="must match"):
        probe_accuracy(np.zeros((4, 2)), np.array([0, 1, 0, 1]), np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="positive integer"):
        knn_accuracy(np.zeros((4, 2)), np.array([0, 1, 0, 1]), np.zeros((2, 2)), np.array([0, 1]), k=0)
