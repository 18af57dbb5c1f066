"""ccloss.experiments.comparison: the comparison's configs (one base, per-loss options) and its table
beside the paper's numbers."""

import statistics

from ccloss.experiments.comparison import comparison_config, comparison_table, run_name
from ccloss.experiments.tables import collect_runs, format_mean_std, markdown_table

from .helpers import fake_run


def test_comparison_config_gives_cc_options_to_cc_only():
    base, per_loss = comparison_config(
        dataset="digits", lam=0.5, form="sums", group_size=8, loss_params={"eps": 1e-4}, epochs=2
    )
    assert base.lam is None and base.form is None and base.group_size is None and base.quiet
    assert per_loss == {"cc": {"lam": 0.5, "form": "sums", "group_size": 8}}
    cc = base.for_loss("cc", **per_loss["cc"])
    assert (cc.loss, cc.lam, cc.form, cc.group_size, cc.loss_params) == ("cc", 0.5, "sums", 8, {"eps": 1e-4})
    ical = base.for_loss("ical", **(per_loss.get("ical") or {}))
    assert ical.lam is None  # ICAL keeps its own default (5)


def test_comparison_table_puts_the_paper_beside_ours(tmp_path):
    dirs = [fake_run(tmp_path / run_name(loss, s), loss, s, 70.0 + s, 0.5) for loss in ("ce", "cc") for s in (0, 1)]
    table = comparison_table(collect_runs(dirs)).set_index("loss")
    assert table.loc["ce+CAM", "paper acc (%)"] == "77.57 ± 0.01"
    assert table.loc["cc", "paper acc (%)"] == "78.23 ± 0.07"
    assert table.loc["cc", "test_acc (%)"] == format_mean_std(70.5, statistics.stdev([70.0, 71.0]))
    text = markdown_table(table.reset_index())
    assert text.splitlines()[0].startswith("| loss |") and "78.23 ± 0.07" in text


def test_comparison_table_counts_collapsed_runs(tmp_path):
    dirs = [
        fake_run(tmp_path / run_name("cc", s), "cc", s, 90.0, ratio, collapsed=c)
        for s, (ratio, c) in enumerate([(0.04, False), (0.05, False), (0.42, True)])
    ]
    dirs += [fake_run(tmp_path / run_name("ce", s), "ce", s, 90.0, 0.12, collapsed=False) for s in range(2)]
    table = comparison_table(collect_runs(dirs)).set_index("loss")
    expected = format_mean_std(statistics.mean([0.04, 0.05, 0.42]), statistics.stdev([0.04, 0.05, 0.42]), 3)
    assert table.loc["cc", "test intra/inter"] == f"{expected} (1 of 3 collapsed)"
    assert table.loc["ce+CAM", "test intra/inter"] == "0.120 ± 0.000"
