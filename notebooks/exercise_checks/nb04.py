"""Checks of notebook 04 (ablations): the paired change of a setting against lambda = 0, seed by seed, and the
number of optimizer steps an epoch takes (the training loader drops the last incomplete batch)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import Case, close, not_done, passed

__all__ = ["CASES", "check_paired_change", "check_steps_per_epoch"]


def _paired(runs: pd.DataFrame, lam: float) -> np.ndarray:
    """acc(lam, seed) - acc(0, seed) for every seed run at both, in seed order."""
    table = runs.pivot_table(index="seed", columns="lam", values="test_acc")
    return (table[lam] - table[0.0]).dropna().sort_index().to_numpy()


def check_paired_change(answer, runs: pd.DataFrame, lam: float) -> None:
    """Your turn 1: per seed, test accuracy at ``lam`` minus at lambda = 0 (same seed), in seed order."""
    not_done("Your turn 1", answer)
    ok = close(np.asarray(answer, dtype=float).ravel(), _paired(runs, lam), rtol=0, atol=1e-6)
    passed("Your turn 1", ok, "one number per seed: the run at λ with that seed minus the λ = 0 run with the same "
                              "seed (later λ first), ordered by seed.")  # fmt: skip


def check_steps_per_epoch(answer, n_train: int, small_batch: int, large_batch: int) -> None:
    """Your turn 2: [steps per epoch at small_batch, at large_batch]; only whole batches are trained."""
    not_done("Your turn 2", answer)
    want = [n_train // small_batch, n_train // large_batch]
    ok = len(list(answer)) == 2 and all(float(a) == w for a, w in zip(answer, want))
    passed("Your turn 2", ok, "a list of two whole numbers, small batch first; the loader drops the last batch "
                              "when it is not full.")  # fmt: skip


def _lambda_runs() -> tuple:
    acc = {(0.0, 0): 98.1, (0.0, 1): 97.9, (0.0, 2): 98.4, (1.0, 0): 97.0, (1.0, 1): 97.5, (1.0, 2): 96.8}
    runs = pd.DataFrame([{"lam": lam, "seed": seed, "test_acc": a} for (lam, seed), a in acc.items()])
    return runs.sample(frac=1.0, random_state=0).reset_index(drop=True), 1.0  # rows not in seed order


CASES = {
    "paired_change": Case(
        check_paired_change,
        _lambda_runs,
        right=lambda runs, lam: _paired(runs, lam),
        wrong={
            "reversed (lambda = 0 minus lambda)": lambda runs, lam: -_paired(runs, lam),
            "difference of the means, repeated": lambda runs, lam: np.full(3, _paired(runs, lam).mean()),
            "not paired (rows in file order)": lambda runs, lam: (
                runs.loc[runs["lam"] == lam, "test_acc"].to_numpy() - runs.loc[runs["lam"] == 0, "test_acc"].to_numpy()
            ),
            "seeds off by one": lambda runs, lam: np.roll(_paired(runs, lam), 1),
        },
    ),
    "steps_per_epoch": Case(
        check_steps_per_epoch,
        lambda: (4250, 8, 128),
        right=lambda n, s, b: [n // s, n // b],
        wrong={
            "the last, partial batch counted": lambda n, s, b: [-(-n // s), -(-n // b)],
            "not whole batches": lambda n, s, b: [n / s, n / b],
            "large batch first": lambda n, s, b: [n // b, n // s],
        },
    ),
}
