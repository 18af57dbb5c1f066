"""Checks of notebook 06 (loss comparison): how many objectives beat CE's mean, and CC-Loss+CAM against
CE+CAM on the seeds both were run with (like with like: both with the channel attention module)."""

from __future__ import annotations

import pandas as pd

from . import Case, close, not_done, passed

__all__ = ["CASES", "check_above_ce", "check_cam_paired"]


def _above(runs: pd.DataFrame) -> int:
    """Objectives (per dataset and backbone) whose mean test accuracy is above plain CE's."""
    means = runs.groupby(["dataset", "backbone", "loss"])["test_acc"].mean().unstack("loss")
    return int(means.drop(columns="ce").gt(means["ce"], axis=0).sum().sum())


def check_above_ce(answer, runs: pd.DataFrame) -> None:
    """Your turn 1: the number of other objectives whose mean accuracy is above CE's (same dataset, backbone)."""
    not_done("Your turn 1", answer)
    passed("Your turn 1", close(answer, _above(runs), rtol=0, atol=0),
           "compare means over seeds, one per objective, with CE's mean; CE itself does not count.")  # fmt: skip


def _cam_paired(runs: pd.DataFrame) -> float:
    """Mean over the seeds both have of acc(CC-Loss+CAM) - acc(CE+CAM)."""
    with_cam = runs[runs["cam"].astype(bool)]
    table = with_cam.pivot_table(index="seed", columns="loss", values="test_acc")
    return float((table["cc"] - table["ce"]).dropna().mean())


def check_cam_paired(answer, runs: pd.DataFrame) -> None:
    """Your turn 2: CC-Loss+CAM minus CE+CAM, seed by seed on the seeds both ran, averaged (points)."""
    not_done("Your turn 2", answer)
    passed("Your turn 2", close(answer, _cam_paired(runs), rtol=0, atol=1e-6),
           "both rows need the CAM, and only seeds that both were run with count; CC-Loss minus CE.")  # fmt: skip


def _all_runs() -> tuple:
    acc = {"ce": (97.6, 97.8, 97.5), "focal": (97.0, 97.4, 97.1), "ical": (98.3, 97.6, 97.8),
           "mcloss": (97.2, 97.9, 97.9), "cc": (97.7, 98.0, 97.9)}  # fmt: skip
    rows = [(loss, loss == "cc", seed, a) for loss, values in acc.items() for seed, a in enumerate(values)]
    frame = pd.DataFrame(rows, columns=["loss", "cam", "seed", "test_acc"])
    return (frame.assign(dataset="mnist5k", backbone="resnet18"),)


def _cam_runs() -> tuple:
    (runs,) = _all_runs()
    ce_cam = pd.DataFrame({"loss": "ce", "cam": True, "seed": [0, 1], "test_acc": [98.3, 97.9]})
    return (pd.concat([runs, ce_cam.assign(dataset="mnist5k", backbone="resnet18")], ignore_index=True),)


def _cc_minus(runs: pd.DataFrame, cam: bool, seeds=None) -> float:
    ce = runs[(runs["loss"] == "ce") & (runs["cam"] == cam)].set_index("seed")["test_acc"]
    cc = runs[runs["loss"] == "cc"].set_index("seed")["test_acc"]
    return float(cc.mean() - ce.mean()) if seeds is None else float((cc - ce).dropna().mean())


CASES = {
    "above_ce": Case(
        check_above_ce,
        _all_runs,
        right=_above,
        wrong={
            "CE counted too (>= instead of >)": lambda runs: _above(runs) + 1,
            "runs above CE's mean, not objectives": lambda runs: int(
                (runs.loc[runs["loss"] != "ce", "test_acc"] > runs.loc[runs["loss"] == "ce", "test_acc"].mean()).sum()
            ),
            "objectives below CE": lambda runs: 3 - _above(runs),
        },
    ),
    "cam_paired": Case(
        check_cam_paired,
        _cam_runs,
        right=_cam_paired,
        wrong={
            "against CE without the CAM": lambda runs: _cc_minus(runs, cam=False, seeds="paired"),
            "all of CC-Loss's seeds against CE+CAM's two": lambda runs: _cc_minus(runs, cam=True),
            "reversed (CE+CAM minus CC-Loss)": lambda runs: -_cam_paired(runs),
        },
    ),
}
