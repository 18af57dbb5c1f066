"""Part 5's tables and pre-registered rule (experiments.study_separation) on hand-made sweep folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments import study_separation as part5
from experiments.study import REFERENCE, load_study
from tests.experiments.helpers import experiments_cli as cli
from tests.experiments.helpers import study_folder


def make_study(tmp_path: Path, runs: list[dict], split: str = "val", name: str = "study") -> Path:
    """A sweep folder, one point per run: {label, dataset, seed, acc, knn, probe, merged, collapsed}."""

    def final_of(run):
        return {
            f"{split}_acc": run["acc"],
            f"{split}_intra_inter": 0.1,
            f"{split}_d_inter": 1.0,
            f"{split}_attention_collapsed": bool(run.get("collapsed", False)),
            f"{split}_knn_acc": run["knn"],
            f"{split}_probe_acc": run.get("probe", run["knn"]),
            f"{split}_merged_pairs": run.get("merged", 0),
            f"{split}_pair_sep_min": 2.5,
        }

    return study_folder(tmp_path, runs, final_of, name)


def candidate(label, accs, knns, merged=(), collapsed=(), probes=None, seeds=(0, 1, 2)):
    """Runs of one candidate on digits and mnist5k: accs[d] and knns[d] are per dataset, same for every seed
    unless lists; ``merged`` / ``collapsed`` hold (dataset, seed) pairs."""
    out = []
    for d, dataset in enumerate(("digits", "mnist5k")):
        for s in seeds:
            acc = accs[d][s] if isinstance(accs[d], list) else accs[d]
            out.append({
                "label": label, "dataset": dataset, "seed": s, "acc": acc, "knn": knns[d],
                "probe": (probes or knns)[d], "merged": 3 if (dataset, s) in merged else 0,
                "collapsed": (dataset, s) in collapsed,
            })  # fmt: skip
    return out


REF = candidate(REFERENCE, [[99.0, 98.0, 100.0], [98.0, 97.0, 99.0]], [90.0, 80.0])  # std 1.0 on both


def test_summary_by_hand(tmp_path):
    runs = load_study([make_study(tmp_path, REF + candidate("a", [99, 98], [95, 90], merged={("mnist5k", 1)}))])
    table = part5.summary(runs).set_index(["label", "dataset"])
    ref = table.loc[(REFERENCE, "digits")]
    assert ref["acc_mean"] == pytest.approx(99.0) and ref["acc_std"] == pytest.approx(1.0)
    row = table.loc[("a", "mnist5k")]
    assert (row["merged_total"], row["runs_merged"], row["n"]) == (3, 1, 3)
    assert row["knn_mean"] == pytest.approx(90.0)


def test_rule_conditions_and_score(tmp_path):
    runs = list(REF)
    runs += candidate("merges", [99.5, 98.5], [99.0, 99.0], merged={("digits", 2)})  # best score, one merged run
    runs += candidate("collapses", [99.5, 98.5], [98.0, 98.0], collapsed={("mnist5k", 0)})
    runs += candidate("costly", [99.5, 96.9], [97.5, 97.5])  # mnist5k 96.9 < 98 - 1
    runs += candidate("good", [98.1, 97.1], [95.0, 93.0])  # just within CE+CAM's spread
    runs += candidate("better", [99.0, 98.0], [96.0, 96.0])
    table = part5.select(load_study([make_study(tmp_path, runs)])).set_index("label")
    assert table.loc["better", "rank"] == 1 and table.loc["good", "rank"] == 2
    assert table.loc["better", "score"] == pytest.approx(96.0)
    for label, reason in (("merges", "1 run(s) with merged pairs"), ("collapses", "1 collapsed"),
                          ("costly", "mnist5k acc 96.90 < 97.00")):  # fmt: skip
        assert not table.loc[label, "eligible"] and reason in table.loc[label, "why not"]
    assert part5.finalists(part5.verdicts(load_study([make_study(tmp_path, runs, name="again")]))) == ["better", "good"]


def test_finalists_fall_back_to_fewest_merged_pairs_and_add_the_default(tmp_path):
    runs = list(REF)
    runs += candidate("default", [99, 98], [85, 85], merged={("digits", 0), ("mnist5k", 0), ("mnist5k", 1)})
    runs += candidate("few_merged", [99, 98], [92, 92], merged={("digits", 0)})
    runs += candidate("clean", [99, 98], [91, 91])
    runs += candidate("cheap_but_costly", [95, 90], [99, 99])  # fails (c): never a fallback
    chosen = part5.finalists(part5.verdicts(load_study([make_study(tmp_path, runs)])))
    assert chosen == ["clean", "few_merged", "default"]


def test_ties_within_half_a_point_go_to_the_probe(tmp_path):
    five = (0, 1, 2, 3, 4)
    ref = candidate(REFERENCE, [99, 98], [90, 80], seeds=five)
    runs = ref + candidate("a", [99, 98], [96.0, 96.0], probes=[90, 90], seeds=five)
    runs += candidate("b", [99, 98], [95.6, 95.6], probes=[97, 97], seeds=five)
    runs += candidate("screened_only", [99, 98], [99.9, 99.9])  # 3 seeds: not a finalist once stage B ran
    table = part5.select(load_study([make_study(tmp_path, runs)])).set_index("label")
    assert table.loc["b", "rank"] == 1 and table.loc["a", "rank"] == 2
    assert not table.loc["screened_only", "finalist"] and np.isnan(table.loc["screened_only", "rank"])


def test_decision_on_test(tmp_path):
    five = (0, 1, 2, 3, 4)
    runs = candidate(REFERENCE, [[99, 98, 100, 99, 99], [98, 97, 99, 98, 98]], [90.0, 80.0], seeds=five)
    runs += candidate("winner", [99, 97.5], [95.0, 85.0], seeds=five)
    runs += candidate("short", [99, 97.5], [95.0, 84.9], seeds=five)  # 4.9 points on mnist5k: not enough
    runs = load_study([make_study(tmp_path, runs, split="test")])
    decided = part5.decision(runs, "winner").set_index("dataset")
    assert bool(decided.loc["mnist5k", "passes"])
    assert decided.loc["mnist5k", "10-NN vs CE+CAM (pp)"] == pytest.approx(5.0)
    short = part5.decision(runs, "short").set_index("dataset")
    assert not short.loc["mnist5k", "passes"] and short.loc["mnist5k", "acc within CE+CAM's spread or better"]


def test_markdown_and_cli(tmp_path):
    folder = make_study(tmp_path, REF + candidate("good", [99, 98], [95, 93]))
    text = part5.markdown(load_study([folder]))
    unmeasured = "not measured | " * 3  # P@1, MAP@R, unseparated pairs: these runs predate them
    assert f"| good | digits | 3 | 99.00 ± 0.00 | {unmeasured}95.0 ± 0.0 |" in text and "Stage B's finalists" in text
    result = cli("study", str(folder), "--part5")
    assert result.returncode == 0, result.stderr
    assert "Part 5's rule" in result.stdout and "| 1 | good |" in result.stdout


def test_pair_distance_shares_by_hand():
    # three classes: pair distances 1, 1 and 10; the farthest pair carries 10 / 12 of the sum
    dist = np.array([[0.1, 1.0, 10.0], [1.0, 0.1, 1.0], [10.0, 1.0, 0.1]])
    shares = part5.pair_distance_shares(dist, top=1)
    assert shares["top_share"] == pytest.approx(10 / 12) and shares["equal_share"] == pytest.approx(1 / 3)
    assert shares["median_over_mean"] == pytest.approx(1 / 4)
    # s = D_ab / D_aa = 1 / 0.1 = 10 for the near pairs: nothing merged; at D_aa = 0.6, s = 1.67 < 2 for them
    assert (shares["merged_pairs"], shares["merged_share"]) == (0, 0.0)
    near = part5.pair_distance_shares(np.where(np.eye(3, dtype=bool), 0.6, dist).tolist(), top=1)
    assert near["merged_pairs"] == 2 and near["merged_share"] == pytest.approx(2 / 12)


def test_without_the_reference_the_rule_says_so(tmp_path):
    runs = load_study([make_study(tmp_path, candidate("good", [99, 98], [95, 93]))])
    with pytest.raises(ValueError, match="no 'ce_cam' runs"):
        part5.select(runs)


def test_runs_with_todays_keys_are_read_with_every_measure(tmp_path):
    """A run of today's code writes ``pair_geometry_below_2`` (Part 5's ``merged_pairs``), P@1, MAP@R and the
    held-out classifier's unseparated pairs; read as 0 merged pairs, not as unmeasured (which counts merged)."""

    def final_of(run):
        return {
            "test_acc": run["acc"], "test_intra_inter": 0.1, "test_d_inter": 1.0, "test_knn_acc": run["knn"],
            "test_probe_acc": run["knn"], "test_pair_geometry_below_2": run["merged"], "test_pair_geometry_min": 3.0,
            "test_precision_at_1": run["knn"] + 1, "test_map_at_r": run["knn"] - 10,
            "test_unseparated_pairs": run["merged"],
        }  # fmt: skip

    runs = candidate(REFERENCE, [99.0, 98.0], [90.0, 80.0], merged={("mnist5k", 0)})
    table = part5.summary(load_study([study_folder(tmp_path, runs, final_of, "today")])).set_index("dataset")
    assert table.loc["digits", "runs_merged"] == 0 and table.loc["mnist5k", "runs_merged"] == 1
    assert table.loc["mnist5k", "merged_total"] == 3 and table.loc["mnist5k", "unseparated_mean"] == pytest.approx(1.0)
    assert table.loc["digits", "p_at_1_mean"] == pytest.approx(91.0) and table.loc["digits", "map_r_mean"] == 80.0
    text = part5.markdown(load_study([tmp_path / "today"]), decide=False)
    assert "| ce_cam | mnist5k | 3 | 98.00 ± 0.00 | 81.0 ± 0.0 | 70.0 ± 0.0 | 1.0 ± 1.7 | 80.0 ± 0.0 |" in text
    assert "decision" not in text and "rule" not in text
