"""experiments.tables: run directories collected into result tables over seeds, and written out."""

import statistics

import numpy as np
import pandas as pd
import pytest

from experiments.comparison import run_name
from experiments.tables import aggregate, collect_runs, format_mean_std, markdown_table, write_table

from .helpers import fake_run


def test_aggregate_matches_hand_computation(tmp_path):
    accs = {"ce": [70.0, 72.0, 77.0], "cc": [75.0, 76.0]}
    dirs = [
        fake_run(tmp_path / run_name(loss, s), loss, s, a, 0.1 * (s + 1))
        for loss, values in accs.items()
        for s, a in enumerate(values)
    ]
    dirs.append(fake_run(tmp_path / "unfinished", "cc", 9, None, None, status="running"))
    dirs.append(tmp_path / "missing")
    runs = collect_runs(dirs)
    assert len(runs) == 5
    table = aggregate(runs, by=["loss"]).set_index("loss")
    for loss, values in accs.items():
        assert table.loc[loss, "n"] == len(values)
        assert table.loc[loss, "test_acc_mean"] == pytest.approx(statistics.mean(values))
        assert table.loc[loss, "test_acc_std"] == pytest.approx(statistics.stdev(values))


def test_single_run_has_zero_std(tmp_path):
    runs = collect_runs([fake_run(tmp_path / "a", "cc", 0, 50.0, 0.2)])
    table = aggregate(runs, by=["loss"])
    assert table["test_acc_std"].iloc[0] == 0.0 and table["n"].iloc[0] == 1


def test_format_and_markdown_handle_missing_values():
    assert format_mean_std(float("nan"), 0.0) == ""
    assert markdown_table(pd.DataFrame({"a": [1, None]})).splitlines()[-1] == "|  |"


def test_write_table(tmp_path):
    table = pd.DataFrame({"loss": ["ce", "cc"], "test_acc (%)": ["90.00 ± 1.00", "91.00 ± 0.50"]})
    md, csv = write_table(table, tmp_path / "out", title="Title.")
    text = md.read_text()
    assert text.startswith("Title.\n\n| loss | test_acc (%) |") and "| cc | 91.00 ± 0.50 |" in text
    assert pd.read_csv(csv).equals(table)


def test_format_mean_std_with_one_run_or_none():
    from experiments.tables import format_mean_std

    assert format_mean_std(97.4321, 0.456) == "97.43 ± 0.46"
    assert format_mean_std(20.44, float("nan")) == "20.44"  # one seed: no std, not "± nan"
    assert format_mean_std(float("nan"), float("nan")) == ""
    assert format_mean_std(float("nan"), float("nan"), missing="not measured") == "not measured"
    assert format_mean_std(0.12345, 0.01, digits=3) == "0.123 ± 0.010"


def test_a_spread_prints_as_zero_only_when_it_is_zero():
    from experiments.tables import format_mean_std

    assert format_mean_std(97.5, 0.1) == "97.50 ± 0.10"  # the std has the mean's decimals
    assert format_mean_std(0.1, 0.004) == "0.10 ± 0.0040"  # 0.00 would hide a spread: two significant digits
    assert format_mean_std(1.0, 0.000041, digits=1) == "1.0 ± 0.000041"
    assert format_mean_std(0.0, 0.0, digits=1) == "0.0 ± 0.0"  # a true zero stays 0
    assert format_mean_std(97.5, 0.005) == "97.50 ± 0.01"  # rounds up, not to 0: kept at the mean's decimals


def test_format_mean_std_reads_pandas_and_python_gaps_alike():
    from experiments.formatting import format_mean_std

    assert format_mean_std(None, None, missing="not measured") == "not measured"
    assert format_mean_std(pd.NA, 1.0, missing="not measured") == "not measured"
    assert format_mean_std(np.float32(2.5), None, digits=1) == "2.5"
