"""Pinning a loss setting in a sweep file keeps its committed points done when it names what they ran, and
only then (issue 25: the default moved to the class-pair form with a relative eps; the small sweeps pin the
ratio form and the fixed eps their runs used)."""

import shutil
from pathlib import Path

import pytest

from experiments.sweep import Point, Sweep, expand_points, load_sweep, point_status

ROOT = Path(__file__).resolve().parents[2]
POINT = "lam=0.1,seed=0"


@pytest.fixture
def committed(tmp_path):
    """A copy of one committed point of small_lambda (form null, fixed eps) and the pinned file's point."""
    shutil.copytree(ROOT / "results" / "small_lambda" / POINT, tmp_path / POINT)
    point = next(p for p in load_sweep(ROOT / "sweeps" / "small_lambda.yaml", check_notebook=False).expand()
                 if p.name == POINT)  # fmt: skip
    return tmp_path / POINT, point


def test_the_pinned_ratio_and_fixed_eps_are_the_committed_run(committed):
    folder, point = committed
    assert point.parameters["form"] == "ratio" and point.parameters["loss_params"] == {"relative_eps": False}
    assert point_status(folder, point) == "done"


@pytest.mark.parametrize(
    "change",
    [
        {"form": "sums"},  # another form
        {"loss_params": {"relative_eps": True}},  # the relative eps
        {"loss_params": {}},  # the ratio with today's default eps (relative)
        {"form": None},  # today's default form (pair_ratio)
        {"lam": 0.3},  # another weight
        {"epochs": 4},  # not a loss setting at all
    ],
)
def test_any_other_loss_is_stale(committed, change):
    folder, point = committed
    other = Point(point.name, point.values, {**point.parameters, **change})
    assert point_status(folder, other) == "stale"


def test_a_points_loss_params_add_to_the_fixed_ones():
    sweep = Sweep(
        name="forms", notebook=ROOT / "notebooks" / "02_train.ipynb",
        fixed={"loss": "cc", "loss_params": {"relative_eps": False}},
        points=[{"form": "ratio"}, {"form": "ratio", "loss_params": {"squared": False}}],
    )  # fmt: skip
    plain, unsquared = expand_points(sweep)
    assert plain.parameters["loss_params"] == {"relative_eps": False}
    assert unsquared.parameters["loss_params"] == {"relative_eps": False, "squared": False}
    assert unsquared.name == "form=ratio,loss_params=squared-false"  # named by the point's own values
