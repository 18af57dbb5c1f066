"""Result tables over seeds, and the paper's numbers beside ours."""
import json
import statistics

import pandas as pd
import pytest

from ccloss.experiments import comparison_table, run_name
from ccloss.paper import paper_accuracy, paper_table
from ccloss.tables import aggregate, collect_runs, format_mean_std, markdown_table


def fake_run(path, loss, seed, acc, ratio, status="complete", cam=True, collapsed=None):
    path.mkdir(parents=True)
    config = {"dataset": "cifar100", "backbone": "resnet18", "width_mult": 1.0, "cam": cam, "loss": loss,
              "lam": None, "form": None, "group_size": None, "batch_size": 32, "epochs": 2, "seed": seed,
              "loss_params": {}}
    (path / "config.json").write_text(json.dumps(config))
    final = {"test_acc": acc, "best_test_acc": acc, "test_intra_inter": ratio} if status == "complete" else None
    if final is not None and collapsed is not None:
        final["test_attention_collapsed"] = collapsed
    (path / "metrics.json").write_text(json.dumps({"status": status, "history": [], "final": final}))
    return path


def test_aggregate_matches_hand_computation(tmp_path):
    accs = {"ce": [70.0, 72.0, 77.0], "cc": [75.0, 76.0]}
    dirs = [fake_run(tmp_path / run_name(loss, s), loss, s, a, 0.1 * (s + 1))
            for loss, values in accs.items() for s, a in enumerate(values)]
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


def test_comparison_table_puts_the_paper_beside_ours(tmp_path):
    dirs = [fake_run(tmp_path / run_name(loss, s), loss, s, 70.0 + s, 0.5) for loss in ("ce", "cc") for s in (0, 1)]
    table = comparison_table(collect_runs(dirs)).set_index("loss")
    assert table.loc["ce+CAM", "paper acc (%)"] == "77.57 ± 0.01"
    assert table.loc["cc", "paper acc (%)"] == "78.23 ± 0.07"
    assert table.loc["cc", "test_acc (%)"] == format_mean_std(70.5, statistics.stdev([70.0, 71.0]))
    text = markdown_table(table.reset_index())
    assert text.splitlines()[0].startswith("| loss |") and "78.23 ± 0.07" in text


def test_comparison_table_counts_collapsed_runs(tmp_path):
    dirs = [fake_run(tmp_path / run_name("cc", s), "cc", s, 90.0, ratio, collapsed=c)
            for s, (ratio, c) in enumerate([(0.04, False), (0.05, False), (0.42, True)])]
    dirs += [fake_run(tmp_path / run_name("ce", s), "ce", s, 90.0, 0.12, collapsed=False) for s in range(2)]
    table = comparison_table(collect_runs(dirs)).set_index("loss")
    expected = format_mean_std(statistics.mean([0.04, 0.05, 0.42]), statistics.stdev([0.04, 0.05, 0.42]), 3)
    assert table.loc["cc", "test intra/inter"] == f"{expected} (1 of 3 collapsed)"
    assert table.loc["ce+CAM", "test intra/inter"] == "0.120 ± 0.000"


def test_paper_lookups():
    assert paper_accuracy("cc", "vgg16", "mnist", True) == (98.32, 0.08)
    assert paper_accuracy("ce", "resnet18", "cars196", False) == (85.77, None)
    assert paper_accuracy("mcloss", "resnet18", "cars196", False) is None  # empty cell in the paper
    assert paper_accuracy("cc", "resnet18", "digits", True) is None  # no digits in the paper
    assert len(paper_table("losses")) == 42
    with pytest.raises(ValueError, match="losses, cam, lambda, batch_size"):
        paper_table("nope")


def test_format_and_markdown_handle_missing_values():
    assert format_mean_std(float("nan"), 0.0) == ""
    assert markdown_table(pd.DataFrame({"a": [1, None]})).splitlines()[-1] == "|  |"
