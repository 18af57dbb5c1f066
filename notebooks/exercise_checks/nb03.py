"""Checks of notebook 03 (how a ratio loss cheats): the shrink at which a fixed eps halves the paper's ratio,
and d_inter rebuilt from the class x class distance matrix and the class sizes.

Each check computes its expected value from the inputs with plain loops (float64 NumPy), never from the
notebook's variables; a wrong answer that matches a known slip gets a hint about that slip.
"""

from __future__ import annotations

import numpy as np
import torch

from . import Case, close, not_done, passed

__all__ = ["CASES", "check_halving_shrink", "check_d_inter_from_classes"]


def _array(x) -> np.ndarray:
    return np.asarray(x.detach().cpu().double() if isinstance(x, torch.Tensor) else x, dtype=np.float64)


def _d_inter(vectors, labels) -> float:
    """Mean of ||x_i - x_j||^2 over the pairs i, j of different classes, by loops (the definition)."""
    x, y = _array(vectors), _array(labels).astype(int)
    values = [((x[i] - x[j]) ** 2).sum() for i in range(len(y)) for j in range(len(y)) if y[i] != y[j]]
    return float(np.mean(values))


def _diagnose(answer, slips: dict[str, float], otherwise: str) -> str:
    """The hint of the first known slip the answer matches, else ``otherwise``."""
    return next((hint for hint, value in slips.items() if close(answer, value)), otherwise)


def check_halving_shrink(answer, attention, labels, eps: float) -> None:
    """The shrink s at which the fixed-eps ratio d_intra / (d_inter + eps) of ``attention`` is half its value
    at s = 1: s^2 d_intra / (s^2 d_inter + eps) = d_intra / (2 (d_inter + eps)), so s^2 = eps / (d_inter + 2 eps)."""
    not_done("shrink that halves the ratio", answer)
    d_inter = _d_inter(attention, labels)
    expected = float(np.sqrt(eps / (d_inter + 2 * eps)))
    slips = {
        "That is s², not s: the distances scale with s², the vectors with s.": eps / (d_inter + 2 * eps),
        "Check the right-hand side: half of the ratio at s = 1 keeps its own + eps.": float(np.sqrt(eps / d_inter)),
    }
    hint = "Write the ratio at shrink s (every squared distance times s²), set it to half the s = 1 value, solve."
    passed("shrink that halves the ratio", close(answer, expected, rtol=1e-6), _diagnose(answer, slips, hint))


def _class_matrix(vectors, labels) -> tuple[np.ndarray, np.ndarray]:
    """D_ab = mean ||x_i - x_j||^2 over i in a, j in b (i != j when a = b), by loops; and the class sizes."""
    x, y = _array(vectors), _array(labels).astype(int)
    groups = [x[y == c] for c in sorted(set(y.tolist()))]
    d = np.array([[((a[:, None] - b[None]) ** 2).sum(-1).sum() for b in groups] for a in groups])
    n = np.array([len(g) for g in groups], dtype=np.float64)
    pairs = n[:, None] * n[None, :] - np.diag(n)
    return d / pairs, n


def _weighted(vectors, labels, diagonal=False, weight=lambda n: n[:, None] * n[None, :]) -> float:
    """The weighted mean of D_ab over class pairs a != b (``diagonal``: a = b too), weights ``weight(n)``."""
    d, n = _class_matrix(vectors, labels)
    w = weight(n) * (1.0 if diagonal else ~np.eye(len(d), dtype=bool))
    return float((w * d).sum() / w.sum())


def check_d_inter_from_classes(answer, vectors, labels) -> None:
    """d_inter, the mean squared distance over different-class sample pairs, from the class x class matrix
    D_ab and the class sizes n_a: sum_{a != b} n_a n_b D_ab / sum_{a != b} n_a n_b."""
    not_done("d_inter from the class matrix", answer)
    slips = {
        "Every class pair counted once: d_inter weighs a pair by how many sample pairs it holds.": _weighted(
            vectors, labels, weight=lambda n: np.ones((len(n), len(n)))
        ),
        "The diagonal D_aa belongs to d_intra, not d_inter.": _weighted(vectors, labels, diagonal=True),
    }
    hint = "d_inter is a mean over sample pairs of different classes: how many such pairs do classes a and b hold?"
    ok = close(answer, _d_inter(vectors, labels), rtol=1e-6)
    passed("d_inter from the class matrix", ok, _diagnose(answer, slips, hint))


def _attention_inputs():
    g = torch.Generator().manual_seed(3)
    attention = 0.5 + 0.05 * torch.randn(24, 6, generator=g, dtype=torch.float64)
    return attention, torch.arange(24) % 3, 1e-3


def _class_inputs():
    g = torch.Generator().manual_seed(4)
    labels = torch.repeat_interleave(torch.arange(4), torch.tensor([3, 5, 7, 9]))
    centres = torch.randn(4, 5, generator=g, dtype=torch.float64)
    return centres[labels] + 0.1 * torch.randn(len(labels), 5, generator=g, dtype=torch.float64), labels


CASES = {
    "shrink that halves the fixed-eps ratio": Case(
        check=check_halving_shrink,
        inputs=_attention_inputs,
        right=lambda a, y, eps: float(np.sqrt(eps / (_d_inter(a, y) + 2 * eps))),
        wrong={
            "s squared": lambda a, y, eps: eps / (_d_inter(a, y) + 2 * eps),
            "eps dropped on the right": lambda a, y, eps: float(np.sqrt(eps / _d_inter(a, y))),
            "d_all in place of d_inter": lambda a, y, eps: float(
                np.sqrt(eps / (_d_inter(a, torch.arange(len(y))) + 2 * eps))
            ),
            "half": lambda a, y, eps: 0.5,
        },
    ),
    "d_inter from the class matrix": Case(
        check=check_d_inter_from_classes,
        inputs=_class_inputs,
        right=lambda x, y: _weighted(x, y),
        wrong={
            "class pairs unweighted": lambda x, y: _weighted(x, y, weight=lambda n: np.ones((len(n), len(n)))),
            "diagonal included": lambda x, y: _weighted(x, y, diagonal=True),
            "weights n_a + n_b": lambda x, y: _weighted(x, y, weight=lambda n: n[:, None] + n[None, :]),
            "upper triangle over the full count": lambda x, y: _weighted(x, y) / 2,
        },
    ),
}
