"""Checks of notebook 05 (embeddings): the R-precision of one class's test vectors (why P@1 and MAP@R
differ), the held-out classifier of one class pair (the measure behind "unseparated pairs") and the class
that switches on the most channels in the class x channel heat map."""

from __future__ import annotations

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import balanced_accuracy_score

from . import Case, close, not_done, passed

__all__ = ["CASES", "check_r_precision", "check_pair_accuracy", "check_busiest_class"]


def _r_precision_bounds(train_x, train_y, test_x, test_y, c: int, r: int | None = None) -> tuple[float, float]:
    """The R-precision (%) of the test vectors of class c, as a plain loop: for each, the share of class c
    among its R nearest training vectors (Euclidean; R = the number of training vectors of class c), averaged.
    Returned as (lowest, highest) over the ways to break a tie at the R-th distance: identical attention
    vectors occur (a trained SE block can give many images the same vector), and libraries break ties
    differently."""
    train_x, train_y = np.asarray(train_x, dtype=np.float64), np.asarray(train_y)
    r = int((train_y == c).sum()) if r is None else r
    lowest, highest = [], []
    for query in np.asarray(test_x, dtype=np.float64)[np.asarray(test_y) == c]:
        distances = np.sqrt(((train_x - query) ** 2).sum(axis=1))
        edge = np.sort(distances)[r - 1]
        closer, tied = distances < edge * (1 - 1e-9), np.abs(distances - edge) <= edge * 1e-9
        places, same_class = r - int(closer.sum()), int((closer & (train_y == c)).sum())
        tied_c, tied_other = int((tied & (train_y == c)).sum()), int((tied & (train_y != c)).sum())
        lowest.append(100.0 * (same_class + max(0, places - tied_other)) / r)
        highest.append(100.0 * (same_class + min(tied_c, places)) / r)
    return float(np.mean(lowest)), float(np.mean(highest))


def _r_precision(train_x, train_y, test_x, test_y, c: int, r: int | None = None) -> float:
    return _r_precision_bounds(train_x, train_y, test_x, test_y, c, r)[0]


def check_r_precision(answer, train_x, train_y, test_x, test_y, c: int) -> None:
    """Your turn 1: the R-precision (%) of the test vectors of class c against the training vectors
    (any way of breaking ties at the R-th distance passes)."""
    not_done("Your turn 1", answer)
    lowest, highest = _r_precision_bounds(train_x, train_y, test_x, test_y, c)
    ok = lowest - 1e-6 <= float(answer) <= highest + 1e-6
    passed("Your turn 1", ok, "queries: the test vectors of class c; references: all training vectors; R: how "
                              "many training vectors class c has; the share of class c among the R nearest, "
                              "in percent, averaged over the queries.")  # fmt: skip


def _pair(x, y, a: int, b: int):
    keep = (y == a) | (y == b)
    return np.asarray(x)[keep], np.asarray(y)[keep]


def _pair_accuracy(train_x, train_y, test_x, test_y, a: int, b: int) -> float:
    """Balanced accuracy (%) on the test vectors of a and b of a shrinkage LDA fit on their train vectors."""
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(*_pair(train_x, train_y, a, b))
    x, y = _pair(test_x, test_y, a, b)
    return 100.0 * balanced_accuracy_score(y, lda.predict(x))


def check_pair_accuracy(answer, train_x, train_y, test_x, test_y, a: int, b: int) -> None:
    """Your turn 2: the held-out balanced accuracy (%) of the pair (a, b)'s linear classifier."""
    not_done("Your turn 2", answer)
    ok = close(float(answer), _pair_accuracy(train_x, train_y, test_x, test_y, a, b), rtol=1e-6)
    passed("Your turn 2", ok, "fit on the training vectors of the two classes only, score on their test vectors, "
                              "balanced accuracy in percent.")  # fmt: skip


def _busiest(matrix) -> int:
    m = np.asarray(matrix, dtype=float)
    return int((m > m.mean(axis=0, keepdims=True)).sum(axis=1).argmax())


def check_busiest_class(answer, matrix) -> None:
    """Your turn 3: the class (row) with the most channels above that channel's mean over the classes."""
    not_done("Your turn 3", answer)
    ok = isinstance(answer, (int, np.integer)) and int(answer) == _busiest(matrix)
    passed("Your turn 3", ok, "an int, a row of the matrix: compare each entry with its channel's (column's) "
                              "average over the classes, count per class.")  # fmt: skip


def _clusters() -> tuple:
    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 0.45, (3, 16))

    def draw(n):  # noqa: E306
        y = np.repeat(np.arange(3), n)
        return centres[y] + rng.normal(0.0, 1.0, (3 * n, 16)), y

    (train_x, train_y), (test_x, test_y) = draw(40), draw(30)
    return train_x, train_y, test_x, test_y, 0, 2


def _overlapping() -> tuple:
    """Three overlapping classes, more training vectors per class (40) than test vectors (30)."""
    train_x, train_y, test_x, test_y, _, _ = _clusters()
    return train_x, train_y, test_x, test_y, 1


def _nearest_only(train_x, train_y, test_x, test_y, c: int) -> float:
    return _r_precision(train_x, train_y, test_x, test_y, c, r=1)


def _r_from_test(train_x, train_y, test_x, test_y, c: int) -> float:
    return _r_precision(train_x, train_y, test_x, test_y, c, r=int((np.asarray(test_y) == c).sum()))


def _one_too_many(train_x, train_y, test_x, test_y, c: int) -> float:
    return _r_precision(train_x, train_y, test_x, test_y, c, r=int((np.asarray(train_y) == c).sum()) + 1)


def _all_classes(train_x, train_y, test_x, test_y, a, b) -> float:
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(train_x, train_y)
    x, y = _pair(test_x, test_y, a, b)
    return 100.0 * float((lda.predict(x) == y).mean())


def _matrix() -> tuple:
    return (np.random.default_rng(12).uniform(0.0, 1.0, (6, 9)) ** np.linspace(0.5, 2.0, 9),)


CASES = {
    "r_precision": Case(
        check_r_precision,
        _overlapping,
        right=_r_precision,
        wrong={
            "a fraction, not %": lambda *inputs: _r_precision(*inputs) / 100.0,
            "the nearest neighbour only (P@1 of the class)": _nearest_only,
            "R counted in the test split": _r_from_test,
            "R + 1 neighbours (off by one)": _one_too_many,
        },
    ),
    "pair_accuracy": Case(
        check_pair_accuracy,
        _clusters,
        right=_pair_accuracy,
        wrong={
            "a fraction, not %": lambda *inputs: _pair_accuracy(*inputs) / 100.0,
            "scored on the training vectors": lambda tx, ty, ex, ey, a, b: _pair_accuracy(tx, ty, tx, ty, a, b),
            "one classifier for all classes": _all_classes,
        },
    ),
    "busiest_class": Case(
        check_busiest_class,
        _matrix,
        right=_busiest,
        wrong={
            "the fewest channels (argmin)": lambda m: int((m > m.mean(axis=0)).sum(axis=1).argmin()),
            "against the class's own mean (wrong axis)": lambda m: int(
                (m > m.mean(axis=1, keepdims=True)).sum(axis=1).argmax()
            ),
            "the class with the highest mean attention": lambda m: int(m.mean(axis=1).argmax()),
        },
    ),
}
