"""experiments.comparison: the comparison's configs (one base, per-row options), its rows' run directories
and its table of mean +/- std over seeds beside the paper's numbers."""

import json
import statistics

import pytest

from experiments.comparison import comparison_config, comparison_table, row_label, run_comparison, run_name
from experiments.tables import collect_runs, markdown_table

from .helpers import fake_run


def _with(path, form=None, **final):
    """A fake run's config given a CC-Loss form, and its final record given further measures."""
    config, metrics = json.loads((path / "config.json").read_text()), json.loads((path / "metrics.json").read_text())
    config["form"] = form
    metrics["final"].update(final)
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def test_comparison_config_gives_cc_options_to_cc_only():
    base, per_loss = comparison_config(
        dataset="digits", lam=0.5, form="sums", group_size=8, loss_params={"eps": 1e-4}, epochs=2
    )
    assert base.lam is None and base.form is None and base.group_size is None and base.quiet
    assert per_loss["cc"] == {"lam": 0.5, "form": "sums", "group_size": 8}
    assert per_loss["cc_ratio"] == {"loss": "cc", "form": "ratio", "lam": 0.5, "group_size": 8}  # the paper's form
    cc = base.for_loss("cc", **per_loss["cc"])
    assert (cc.loss, cc.lam, cc.form, cc.group_size, cc.loss_params) == ("cc", 0.5, "sums", 8, {"eps": 1e-4})
    ical = base.for_loss("ical", **(per_loss.get("ical") or {}))
    assert ical.lam is None  # ICAL keeps its own default (5)


def test_run_comparison_trains_each_row_with_its_own_objective(tmp_path, monkeypatch):
    """A row named in per_loss trains the loss its "loss" entry names, into <row>_seed<seed>."""
    import experiments.comparison as comparison

    seen = []

    def fake_fit(config):
        seen.append((config.loss, config.form, config.lam, config.seed, config.out, config.resume))
        fake_run(tmp_path / config.out.rsplit("/", 1)[-1] / "x", config.loss, config.seed, 90.0, 0.1)

    monkeypatch.setattr(comparison, "fit", fake_fit)
    base, per_loss = comparison_config(dataset="digits", epochs=1)
    run_comparison(base, ["ce", "cc_ratio", "cc"], [3], tmp_path, per_loss=per_loss)
    assert [(loss, form, lam, seed) for loss, form, lam, seed, _, _ in seen] == [
        ("ce", None, None, 3),
        ("cc", "ratio", None, 3),
        ("cc", None, None, 3),
    ]
    assert [out.rsplit("/", 1)[-1] for *_, out, _ in seen] == ["ce_seed3", "cc_ratio_seed3", "cc_seed3"]
    assert all(resume for *_, resume in seen)


@pytest.mark.parametrize(
    ("loss", "form", "cam", "label"),
    [
        ("ce", None, True, "ce+CAM"),
        ("ce", None, False, "ce"),
        ("cc", None, True, "cc"),
        ("cc", "ratio", True, "cc (ratio)"),
    ],
)
def test_row_label(loss, form, cam, label):
    assert row_label(loss, form, cam) == label


def test_comparison_table_puts_the_paper_beside_ours(tmp_path):
    dirs = [fake_run(tmp_path / run_name(loss, s), loss, s, 70.0 + s, 0.5) for loss in ("ce", "cc") for s in (0, 1)]
    dirs += [_with(fake_run(tmp_path / run_name("cc_ratio", s), "cc", s, 72.0, 0.4), "ratio") for s in (0, 1)]
    table = comparison_table(collect_runs(dirs)).set_index("loss")
    assert table.loc["ce+CAM", "paper acc (%)"] == "77.57 ± 0.01"
    assert table.loc["cc (ratio)", "paper acc (%)"] == "78.23 ± 0.07"
    assert table.loc["cc", "paper acc (%)"] == ""  # the paper has no class-pair form
    assert table.loc["cc", "test_acc (%)"] == f"70.50 ± {statistics.stdev([70.0, 71.0]):.2f}"
    assert table.loc["cc (ratio)", "test_acc (%)"] == "72.00 ± 0.00"
    text = markdown_table(table.reset_index())
    assert text.splitlines()[0].startswith("| loss |") and "78.23 ± 0.07" in text


def test_comparison_table_gives_the_class_measures_of_each_row(tmp_path):
    values = {"ce": [(90.0, 80.0, 2), (91.0, 82.0, 3)], "cc": [(97.0, 95.5, 0), (98.0, 96.5, 0)]}
    dirs = [
        _with(
            fake_run(tmp_path / run_name(loss, s), loss, s, 98.0, 0.1),
            None,
            test_precision_at_1=p1,
            test_map_at_r=mapr,
            test_unseparated_pairs=pairs,
        )  # fmt: skip
        for loss, rows in values.items()
        for s, (p1, mapr, pairs) in enumerate(rows)
    ]
    table = comparison_table(collect_runs(dirs)).set_index("loss")
    for label, loss in (("ce+CAM", "ce"), ("cc", "cc")):
        p1, mapr, pairs = zip(*values[loss])
        assert table.loc[label, "test P@1 (%)"] == f"{statistics.mean(p1):.2f} ± {statistics.stdev(p1):.2f}"
        assert table.loc[label, "test MAP@R (%)"] == f"{statistics.mean(mapr):.2f} ± {statistics.stdev(mapr):.2f}"
    assert table.loc["ce+CAM", "test unseparated"] == f"2.5 ± {statistics.stdev([2, 3]):.1f}"
    assert table.loc["cc", "test unseparated"] == "0.0 ± 0.0"


def test_comparison_table_counts_collapsed_runs(tmp_path):
    dirs = [
        fake_run(tmp_path / run_name("cc", s), "cc", s, 90.0, ratio, collapsed=c)
        for s, (ratio, c) in enumerate([(0.04, False), (0.05, False), (0.42, True)])
    ]
    dirs += [fake_run(tmp_path / run_name("ce", s), "ce", s, 90.0, 0.12, collapsed=False) for s in range(2)]
    table = comparison_table(collect_runs(dirs)).set_index("loss")
    ratios = [0.04, 0.05, 0.42]
    expected = f"{statistics.mean(ratios):.3f} ± {statistics.stdev(ratios):.3f}"
    assert table.loc["cc", "test intra/inter"] == f"{expected} (1 of 3 collapsed)"
    assert table.loc["ce+CAM", "test intra/inter"] == "0.120 ± 0.000"


def test_comparison_config_defaults_are_the_packages():
    """No default differs from TrainConfig's (issue 24: lam used to default to 1.0 here); only quiet."""
    import dataclasses

    from ccloss.config import TrainConfig

    base, per_loss = comparison_config()
    assert per_loss == {
        "cc": {"lam": None, "form": None, "group_size": None},
        "cc_ratio": {"loss": "cc", "form": "ratio", "lam": None, "group_size": None},
    }
    expected = dataclasses.replace(TrainConfig(), loss="cc", quiet=True)
    assert dataclasses.asdict(base) == dataclasses.asdict(expected)
