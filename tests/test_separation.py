"""The class-structure measures against slow references, hand-computed values, and the sets that game
CC-Loss's own statistic (a few classes far away, the rest merged; every vector alike)."""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from ccloss.metrics import dataset_intra_inter
from ccloss.separation import (
    MAX_STORED_CLASSES,
    class_distance_matrix,
    class_structure,
    knn_accuracy,
    pair_separation,
    probe_accuracy,
    separation_from_distances,
)


def blobs(centres, per_class, spread, seed=0, dims=None):
    """Gaussian blobs around ``centres`` (K x C), ``per_class`` samples each."""
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, dtype=np.float64)
    x = np.concatenate([c + spread * rng.standard_normal((per_class, centres.shape[1])) for c in centres])
    y = np.repeat(np.arange(len(centres)), per_class)
    return x, y


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


def distances_by_hand(x, y):
    classes = sorted(set(int(v) for v in y))
    members = {c: [i for i in range(len(y)) if y[i] == c] for c in classes}
    out = np.full((len(classes), len(classes)), np.nan)
    for a, ca in enumerate(classes):
        for b, cb in enumerate(classes):
            pairs = [(i, j) for i in members[ca] for j in members[cb] if i != j]
            if pairs:
                out[a, b] = sum(float(((x[i] - x[j]) ** 2).sum()) for i, j in pairs) / len(pairs)
    return out, classes


@pytest.mark.parametrize("k", [1, 3, 10])
def test_knn_matches_a_loop(k):
    rng = np.random.default_rng(k)
    train_x, eval_x = rng.normal(size=(60, 5)), rng.normal(size=(25, 5))
    train_y, eval_y = rng.integers(0, 4, 60), rng.integers(0, 4, 25)
    train_x[:, 0] += train_y
    eval_x[:, 0] += eval_y
    assert knn_accuracy(train_x, train_y, eval_x, eval_y, k=k) == pytest.approx(
        knn_by_hand(train_x, train_y, eval_x, eval_y, k)
    )


def test_knn_takes_tensors_and_caps_k():
    x = torch.tensor([[0.0], [0.1], [5.0]])
    y = torch.tensor([0, 0, 1])
    # k = 10 > 3 training vectors: all three vote, class 0 wins everywhere
    assert knn_accuracy(x, y, torch.tensor([[0.05], [5.0]]), torch.tensor([0, 1]), k=10) == 50.0
    assert knn_accuracy(x, y, torch.tensor([[0.05], [5.0]]), torch.tensor([0, 1]), k=1) == 100.0


def reference_probe(train_x, train_y, eval_x, C=1.0):
    """Standardise, then minimise C * sum CE + 0.5 ||W||^2 (bias unpenalised) with L-BFGS in float64."""
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std[std == 0] = 1.0
    xt = torch.tensor((train_x - mean) / std)
    yt = torch.tensor(train_y)
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
    logits = torch.tensor((eval_x - mean) / std) @ w.detach() + b.detach()
    return logits.argmax(1).numpy()


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


def test_class_distance_matrix_matches_a_loop():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 4)) * 3 + 10  # off-centre: the centring must not change anything
    y = rng.integers(0, 5, 30)
    y[0] = 7  # a class with one sample: NaN on its diagonal
    expected, classes = distances_by_hand(x, y)
    dist, got_classes = class_distance_matrix(x, y)
    assert list(got_classes) == classes
    np.testing.assert_allclose(dist, expected, rtol=1e-10, equal_nan=True)
    assert np.isnan(dist[classes.index(7), classes.index(7)])


def test_separation_by_hand():
    # 1-D: a = {0, 2}, b = {10, 12}: D_aa = D_bb = 4, D_ab = (100 + 144 + 64 + 100) / 4 = 102
    x = np.array([[0.0], [2.0], [10.0], [12.0]])
    sep = pair_separation(x, np.array([0, 0, 1, 1]))
    assert sep.matrix[0, 1] == pytest.approx(102 / 4)
    assert sep.minimum == pytest.approx(25.5)
    assert (sep.merged, sep.pairs, sep.merged_pairs) == (0, 1, [])
    # closer means: b = {1, 3}: D_ab = (1 + 9 + 1 + 1) / 4 = 3, s = 0.75 < 2, merged
    close = pair_separation(np.array([[0.0], [2.0], [1.0], [3.0]]), np.array([0, 0, 1, 1]))
    assert close.matrix[0, 1] == pytest.approx(0.75)
    assert (close.merged, close.merged_pairs) == (1, [[0, 1]])


def test_separation_is_one_plus_mean_gap_over_spread():
    """s_ab = 1 + ||mu_a - mu_b||^2 / (tr S_a + tr S_b) with unbiased covariances (exact)."""
    x, y = blobs([[0, 0, 0], [1.5, 0, 0]], per_class=40, spread=1.0, seed=2)
    sep = pair_separation(x, y).matrix[0, 1]
    a, b = x[y == 0], x[y == 1]
    gap = float(((a.mean(0) - b.mean(0)) ** 2).sum())
    traces = np.trace(np.cov(a.T)) + np.trace(np.cov(b.T))
    # D_ab = gap + biased traces; (D_aa + D_bb) / 2 = unbiased traces
    biased = traces * (len(a) - 1) / len(a)
    assert sep == pytest.approx((gap + biased) / traces, rel=1e-10)


def test_single_points_coinciding_are_merged_and_apart_are_separated():
    x = np.array([[0.0, 1.0], [0.0, 1.0], [3.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    sep = pair_separation(x, np.array([0, 0, 1, 1, 2, 2]))
    assert math.isinf(sep.matrix[0, 1])
    assert sep.matrix[0, 2] == 1.0  # identical points: merged, not 0/0
    assert (sep.merged, sep.merged_pairs) == (1, [[0, 2]])


def test_merged_pairs_listed_least_separated_first():
    dist = np.array([[1.0, 1.5, 3.0], [1.5, 1.0, 1.2], [3.0, 1.2, 1.0]])
    sep = separation_from_distances(dist, [4, 5, 6])
    assert sep.merged_pairs == [[5, 6], [4, 5]]
    assert sep.minimum == pytest.approx(1.2)


def few_far_rest_merged(seed=0):
    """Classes 0-2 far from everything; classes 3-9 share one blob: what the default did (issue 19)."""
    centres = np.zeros((10, 8))
    centres[0, 0], centres[1, 1], centres[2, 2] = 30.0, 30.0, 30.0
    return blobs(centres, per_class=30, spread=0.3, seed=seed)


def all_separated(seed=0):
    """Every class its own corner of a simplex, at a modest distance."""
    return blobs(np.eye(10) * 3.0, per_class=30, spread=0.4, seed=seed)


def test_measures_catch_what_the_ratio_rewards():
    """A set with a few classes far away and the rest merged has a *lower* intra/inter ratio than a
    set whose every class is separated; the independent measures rank them the other way."""
    gamed_train, gamed_eval = few_far_rest_merged(0), few_far_rest_merged(1)
    honest_train, honest_eval = all_separated(0), all_separated(1)
    ratio = {
        name: dataset_intra_inter(torch.tensor(x), torch.tensor(y))["ratio"]
        for name, (x, y) in {"gamed": gamed_eval, "honest": honest_eval}.items()
    }
    assert ratio["gamed"] < ratio["honest"]
    gamed = class_structure(*gamed_train, *gamed_eval, split="val")
    honest = class_structure(*honest_train, *honest_eval, split="val")
    assert gamed["val_merged_pairs"] == 21  # the 7 merged classes: 7 * 6 / 2 pairs
    assert sorted(map(tuple, gamed["val_merged_pair_list"])) == [(a, b) for a in range(3, 10) for b in range(a + 1, 10)]
    assert honest["val_merged_pairs"] == 0 and honest["val_pair_sep_min"] > 2
    assert gamed["val_knn_acc"] < 50 < 99 < honest["val_knn_acc"]
    assert gamed["val_probe_acc"] < 50 < 99 < honest["val_probe_acc"]


def test_a_collapse_is_every_pair_merged():
    x = np.full((40, 4), 0.5)
    y = np.arange(40) % 4
    record = class_structure(x, y, x, y, split="test")
    assert record["test_merged_pairs"] == record["test_class_pairs"] == 6
    assert record["test_pair_sep_min"] == 1.0
    assert record["test_probe_acc"] <= 25.0


def test_record_keeps_the_matrix_for_few_classes_only():
    x, y = all_separated()
    record = class_structure(x, y, x, y, split="test")
    assert record["test_classes"] == list(range(10))
    assert np.array(record["test_class_distances"]).shape == (10, 10)
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
        (np.full((3, 2), np.nan), np.zeros(3, dtype=int), "NaN or Inf"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "at least one sample"),
    ],
)
def test_bad_input_says_what_is_wrong(vectors, labels, message):
    with pytest.raises(ValueError, match=message):
        pair_separation(vectors, labels)
    with pytest.raises(ValueError, match=message):
        knn_accuracy(vectors, labels, np.zeros((1, 2)), np.zeros(1, dtype=int))


def test_train_and_eval_dimensions_must_match():
    with pytest.raises(ValueError, match="must match"):
        probe_accuracy(np.zeros((4, 2)), np.array([0, 1, 0, 1]), np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="positive integer"):
        knn_accuracy(np.zeros((4, 2)), np.array([0, 1, 0, 1]), np.zeros((2, 2)), np.array([0, 1]), k=0)
