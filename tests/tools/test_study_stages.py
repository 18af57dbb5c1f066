"""The study's stage files are written from the earlier stages by the pre-registered rule (tools/study_stages.py)."""

from __future__ import annotations

import pytest
import yaml

from experiments.study import REFERENCE
from tests.experiments.test_study_separation import REF, candidate, make_study
from tools.study_stages import main, part5_sweep, stage_three_sweep


def test_stage_three_sweep_takes_the_points_of_the_earlier_stages(tmp_path):
    point = {"loss": "cc", "lam": 1.0, "train_options": {"cam_min_hidden": 1}}
    screen = {
        "name": "s",
        "notebook": "notebooks/02_train.ipynb",
        "fixed": {"epochs": 40, "eval_split": "val"},
        "grid": {"dataset": ["digits", "mnist5k"]},
        "points": [dict(point, label=REFERENCE, loss="ce"), dict(point, label="old_default"), dict(point, label="x")],
    }
    finals = dict(screen, points=[dict(point, label="x+lam0.03", lam=0.03, seeds=[0, 1])])  # fmt: skip
    files = [tmp_path / "screen.yaml", tmp_path / "finalists.yaml"]
    for path, data in zip(files, [screen, finals]):
        path.write_text(yaml.safe_dump(data))
    sweep = stage_three_sweep(files, "x+lam0.03")
    assert sweep["fixed"] == {"epochs": 40, "eval_split": "test"} and sweep["grid"] == screen["grid"]
    assert [p["label"] for p in sweep["points"]] == [REFERENCE, "old_default", "x+lam0.03"]
    assert all(p["seeds"] == [0, 1, 2, 3, 4] for p in sweep["points"]) and sweep["points"][2]["lam"] == 0.03
    with pytest.raises(ValueError, match="no point labelled \\['nope'\\]"):
        stage_three_sweep(files, "nope")


def _part5_screen(tmp_path):
    point = {"loss": "cc", "lam": 0.1, "form": "ratio", "train_options": {"cam_min_hidden": 32}}
    screen = {
        "name": "study_part5_screen",
        "notebook": "notebooks/02_train.ipynb",
        "fixed": {"epochs": 40, "eval_split": "val"},
        "grid": {"dataset": ["digits", "mnist5k"]},
        "points": [dict(point, label=label) for label in (REFERENCE, "default", "a", "b", "c")],
        "seeds": [0, 1, 2],
    }
    path = tmp_path / "screen.yaml"
    path.write_text(yaml.safe_dump(screen))
    return path


def test_part5_stage_files(tmp_path):
    screen = _part5_screen(tmp_path)
    finals = part5_sweep([screen], ["a", "default"], "finalists")
    assert [p["label"] for p in finals["points"]] == [REFERENCE, "a", "default"]
    assert all(p["seeds"] == [3, 4] for p in finals["points"]) and finals["fixed"]["eval_split"] == "val"
    test = part5_sweep([screen], ["a", "default"], "test")
    assert test["fixed"] == {"epochs": 40, "eval_split": "test"} and test["points"][1]["seeds"] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="no point labelled \\['zz'\\]"):
        part5_sweep([screen], ["zz"], "test")


def test_part5_finalists_from_the_rule(tmp_path, capsys):
    runs = list(REF)
    runs += candidate("default", [99, 98], [85, 85], merged={("digits", 0)})
    runs += candidate("a", [99, 98], [96, 96])
    runs += candidate("b", [99, 98], [95, 95])
    runs += candidate("c", [99, 98], [99, 99], merged={("mnist5k", 2)})
    folder = make_study(tmp_path, runs)
    out = tmp_path / "finalists.yaml"
    assert main(["part5-finalists", str(folder), "--stages", str(_part5_screen(tmp_path)), "--out", str(out)]) == 0
    written = yaml.safe_load(out.read_text())
    assert [p["label"] for p in written["points"]] == [REFERENCE, "a", "b", "default"]
    assert out.read_text().startswith("# Written by `python -m tools.study_stages part5-finalists ...`")
    assert "['a', 'b', 'default']" in capsys.readouterr().out
