"""Checks of notebook 01 (the method): 1. d_intra by loops; 2. the paper's ratio with a fixed and with a relative
eps on the batch with its spread shrunk; 3. the class-pair form from the class-pair means.

Each check computes its expected value with plain loops over the inputs (float64 NumPy), never from the
notebook's variables; a wrong answer that matches a known slip gets a hint about that slip, never the value.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from . import Case, close, not_done, passed

__all__ = ["CASES", "check_d_intra", "check_pair_ratio", "check_shrunk_ratios"]

EPS_FLOOR = 1e-12  # ccloss.cc_loss.EPS_FLOOR: the denominator's absolute floor under a relative eps


def _array(x) -> np.ndarray:
    return np.asarray(x.detach().cpu().double() if isinstance(x, torch.Tensor) else x, dtype=np.float64)


def _distances(attention) -> np.ndarray:
    """Squared Euclidean distances by the definition, ||a_i - a_j||^2 (a B x B x C broadcast: fine here)."""
    a = _array(attention)
    return ((a[:, None, :] - a[None, :, :]) ** 2).sum(axis=-1)


def _pair_means(dist, labels, diagonal: bool = False) -> tuple[float, float, float]:
    """d_intra (same label, i != j; with ``diagonal`` i == j too), d_inter, d_all (all i != j), by loops."""
    d, y = _array(dist), _array(labels).astype(int)
    sums, counts = {"intra": 0.0, "inter": 0.0}, {"intra": 0, "inter": 0}
    for i in range(len(y)):
        for j in range(len(y)):
            if i == j and not diagonal:
                continue
            kind = "intra" if y[i] == y[j] else "inter"
            sums[kind], counts[kind] = sums[kind] + d[i, j], counts[kind] + 1
    d_all = (d.sum() - np.trace(d)) / (len(y) * (len(y) - 1))
    return sums["intra"] / max(counts["intra"], 1), sums["inter"] / max(counts["inter"], 1), float(d_all)


def _ratio(dist, labels, eps: float, relative: bool = True) -> float:
    """The paper's ratio d_intra / (d_inter + e); e = eps * d_all + 1e-12 (relative) or eps (fixed)."""
    d_intra, d_inter, d_all = _pair_means(dist, labels)
    return d_intra / (d_inter + (eps * d_all + EPS_FLOOR if relative else eps))


def _class_block_mean(d: np.ndarray, y: np.ndarray, a: int, b: int, diagonal: bool = False) -> float | None:
    """Mean of D_ij over i in class a, j in class b (i != j unless ``diagonal``); None without a pair."""
    values = [d[i, j] for i in np.flatnonzero(y == a) for j in np.flatnonzero(y == b) if i != j or diagonal]
    return float(np.mean(values)) if values else None


def _pair_ratio(dist, labels, eps: float, relative: bool = True, singleton_zero: bool = False, diagonal=False):
    """Mean over class pairs a < b (one of them with two samples) of s_ab / (d_ab + e), s_ab the mean of the
    d_aa, d_bb that exist. ``singleton_zero`` / ``diagonal``: two slips (a one-sample class's d_aa taken as
    0; the zero diagonal counted in d_aa)."""
    d, y = _array(dist), _array(labels).astype(int)
    e = eps * _pair_means(d, y)[2] + EPS_FLOOR if relative else eps
    classes = sorted(set(y.tolist()))
    within = {c: _class_block_mean(d, y, c, c, diagonal) for c in classes}
    terms = []
    for k, a in enumerate(classes):
        for b in classes[k + 1 :]:
            if (y == a).sum() < 2 and (y == b).sum() < 2:
                continue
            spread = [within[c] for c in (a, b) if within[c] is not None]
            if singleton_zero:
                spread = [0.0 if within[c] is None else within[c] for c in (a, b)]
            terms.append(np.mean(spread) / (_class_block_mean(d, y, a, b) + e))
    return float(np.mean(terms)) if terms else 0.0


def _diagnose(answer, slips: dict[str, float], otherwise: str) -> str:
    """The hint of the first known slip the answer matches, else ``otherwise``."""
    return next((hint for hint, value in slips.items() if close(answer, value)), otherwise)


def check_d_intra(answer, dist, labels) -> None:
    """Your turn 1: d_intra = mean of D_ij over ordered pairs i != j with the same label."""
    not_done("Your turn 1", answer)
    d_intra, d_inter, d_all = _pair_means(dist, labels)
    slips = {
        "A sample is not its own pair: leave out i == j (those distances are 0).": _pair_means(dist, labels, True)[0],
        "That is the mean over every pair; keep only the pairs whose two labels agree.": d_all,
        "That averages the pairs of *different* classes.": d_inter,
        "Count each ordered pair (i, j) and (j, i) in the sum as well as in the count.": d_intra / 2,
    }
    hint = "Sum D[i, j] over the pairs of two different samples with the same label, then divide by how many there are."
    passed("Your turn 1", close(answer, d_intra), _diagnose(answer, slips, hint))


def check_pair_ratio(answer, dist, labels, eps: float) -> None:
    """Your turn 3: the class-pair form with a relative eps (ccloss.cc_forms, ``pair_ratio``)."""
    not_done("Your turn 3", answer)
    slips = {
        "A class with one sample has no d_aa: its pairs use the other class's d_bb alone, not a 0.": _pair_ratio(
            dist, labels, eps, singleton_zero=True
        ),
        "eps is relative here: it multiplies d_all, the mean distance over all pairs i != j.": _pair_ratio(
            dist, labels, eps, relative=False
        ),
        "That is the paper's ratio over sample pairs; average one term per class pair instead.": _ratio(
            dist, labels, eps
        ),
    }
    hint = "One term per class pair a < b that has a same-class pair: the mean of the d_aa that exist, over d_ab + e."
    passed("Your turn 3", close(answer, _pair_ratio(dist, labels, eps)), _diagnose(answer, slips, hint))


def _shrink(attention, shrink: float) -> np.ndarray:
    """m + shrink (a_i - m), m the batch mean: the same batch with its spread scaled by ``shrink``."""
    a = _array(attention)
    return a.mean(axis=0) + shrink * (a - a.mean(axis=0))


def check_shrunk_ratios(answer, attention, labels, eps: float, shrink: float) -> None:
    """Your turn 2: (fixed-eps ratio, relative-eps ratio) of the batch with its spread scaled by ``shrink``."""
    not_done("Your turn 2", answer)
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise AssertionError("✗ Your turn 2: not yet. Give two numbers: (fixed eps, relative eps).")
    d_small, d_orig = _distances(_shrink(attention, shrink)), _distances(attention)
    expected = [_ratio(d_small, labels, eps, relative) for relative in (False, True)]
    first = {
        "The fixed-eps value is the unshrunk batch's: apply the shrink to the attention first.": _ratio(
            d_orig, labels, eps, False
        ),
        "The first number needs relative_eps=False: eps then stays fixed while the distances shrink.": expected[1],
        "Shrink the spread (multiply a - m by the factor), do not widen it.": _ratio(
            _distances(_shrink(attention, 1 / shrink)), labels, eps, False
        ),
        "The exercise is about the paper's ratio (form='ratio'), not the default class-pair form.": _pair_ratio(
            d_small, labels, eps, relative=False
        ),
    }
    hint = "Both use the paper's ratio on m + shrink * (A - m); first with a fixed eps, then with a relative one."
    for number, (got, want) in enumerate(zip(answer, expected)):
        slips = first if number == 0 else {"The second number is the relative-eps ratio (the default).": expected[0]}
        passed(f"Your turn 2 ({('fixed', 'relative')[number]} eps)", close(got, want), _diagnose(got, slips, hint))


# --- the exercise test's cases (tests/test_exercise_checks.py): a batch in a narrow band, as an SE block's -----


def _toy_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """24 float32 vectors of 16 channels near 0.5 (class means apart); labels with a one-sample class (5)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0] * 5 + [1] * 4 + [2] * 6 + [4] * 3 + [5] + [7] * 5)
    centres = 0.03 * torch.randn(8, 16, generator=g)
    attention = 0.5 + centres[labels] + 0.02 * torch.randn(len(labels), 16, generator=g)
    return attention, labels


def _package(attention, labels, **options) -> float:
    import ccloss

    return float(ccloss.CCLoss(**options)(attention, labels))


def _dist_inputs() -> tuple:
    attention, labels = _toy_batch()
    return torch.as_tensor(_distances(attention)), labels


def _ratios(attention, labels, eps, factor, form="ratio") -> tuple[float, float]:
    """(fixed-eps, relative-eps) values of ``form`` on the batch with its spread scaled by ``factor``."""
    small = torch.as_tensor(_shrink(attention, factor), dtype=torch.float32)
    return tuple(_package(small, labels, form=form, eps=eps, relative_eps=relative) for relative in (False, True))


CASES = {
    "d_intra by loops": Case(
        check=check_d_intra,
        inputs=_dist_inputs,
        right=lambda d, y: float(
            np.mean([d[i, j] for i in range(len(y)) for j in range(len(y)) if i != j and y[i] == y[j]])
        ),
        wrong={
            "diagonal counted": lambda d, y: float(d[y[:, None] == y[None, :]].mean()),
            "every pair (d_all)": lambda d, y: float(d.sum() / (len(y) * (len(y) - 1))),
            "d_inter": lambda d, y: float(d[y[:, None] != y[None, :]].mean()),
            "unordered sum over the ordered count": lambda d, y: float(
                torch.triu(torch.where(y[:, None] == y[None, :], d, 0.0), 1).sum()
                / ((y[:, None] == y[None, :]).sum() - len(y))
            ),
        },
    ),
    "class-pair form": Case(
        check=check_pair_ratio,
        inputs=lambda: (*_dist_inputs(), 1e-3),
        right=lambda d, y, eps: _package(_toy_batch()[0], y, eps=eps),  # ccloss.CCLoss(): the package's default
        wrong={
            "one-sample class as d_aa = 0": partial(_pair_ratio, singleton_zero=True),
            "fixed eps": partial(_pair_ratio, relative=False),
            "diagonal zeros in d_aa": partial(_pair_ratio, diagonal=True),
            "the paper's ratio": lambda d, y, eps: _package(_toy_batch()[0], y, form="ratio", eps=eps),
        },
    ),
    "shrunk batch, fixed and relative eps": Case(
        check=check_shrunk_ratios,
        inputs=lambda: (*_toy_batch(), 1e-3, 0.1),
        right=lambda a, y, eps, shrink: _ratios(a, y, eps, shrink),
        wrong={
            "skipped the shrinking": lambda a, y, eps, shrink: _ratios(a, y, eps, 1.0),
            "relative eps for both": lambda a, y, eps, shrink: (_ratios(a, y, eps, shrink)[1],) * 2,
            "widened instead of shrunk": lambda a, y, eps, shrink: _ratios(a, y, eps, 1 / shrink),
            "swapped": lambda a, y, eps, shrink: _ratios(a, y, eps, shrink)[::-1],
            "the class-pair form": lambda a, y, eps, shrink: _ratios(a, y, eps, shrink, form="pair_ratio"),
            "one number only": lambda a, y, eps, shrink: _ratios(a, y, eps, shrink)[0],
        },
    ),
}
