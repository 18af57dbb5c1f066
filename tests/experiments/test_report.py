"""experiments.report: aggregation over seeds against a hand computation, the paper join, the files
written, the export of small result files, and the plots (report_plots). Sweep folders are built by hand (the
files experiments.sweep writes), so nothing trains and no notebook runs here."""

import math
import subprocess
import sys
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from experiments.files import read_json, write_json  # noqa: E402
from experiments.report import (  # noqa: E402
    export_results,
    format_report,
    group_label,
    paper_curves,
    paper_lookup,
    paper_main_table,
    report_table,
    write_report,
)
from experiments.report_plots import plot_ablation, plot_categories  # noqa: E402
from experiments.sweep import Sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "dataset": "digits",
    "backbone": "resnet18",
    "width_mult": 0.125,
    "cam": True,
    "loss": "cc",
    "lam": 1.0,
    "form": "ratio",
    "group_size": None,
    "batch_size": 32,
    "epochs": 2,
    "loss_params": {},
}


def fake_sweep(folder: Path, sweep: Sweep, accuracy, ratio=None, incomplete=(), collapsed=None, extra=None) -> Path:
    """Write what ``experiments.sweep.run_sweep`` leaves: sweep.json and one folder per point."""
    sweep_dir = folder / sweep.name
    write_json(sweep_dir / "sweep.json", sweep.to_dict())
    for point in sweep.expand():
        point_dir = sweep_dir / point.name
        config = {
            **BASE,
            **{k: v for k, v in point.parameters.items() if k in BASE},
            "seed": point.values.get("seed", 0),
        }
        write_json(point_dir / "config.json", config)
        complete = point.name not in incomplete
        write_json(
            point_dir / "point.json",
            {
                "name": point.name,
                "values": point.values,
                "parameters": point.parameters,
                "status": "complete" if complete else "failed",
                "point_dir": str(point_dir),
            },
        )
        final = {"test_acc": accuracy(point.values), "best_test_acc": accuracy(point.values) + 1, "epochs": 2}
        if ratio is not None:
            final["test_intra_inter"] = ratio(point.values)
        if collapsed is not None:
            final["test_attention_collapsed"] = collapsed(point.values)
        final.update(extra(point.values) if extra is not None else {})
        (point_dir / "cc_seed0").mkdir()
        (point_dir / "cc_seed0" / "checkpoint.pt").write_bytes(b"not small")
        (point_dir / "notebook.ipynb").write_text("{}")
        if complete:
            write_json(point_dir / "metrics.json", {"status": "complete", "history": [final], "final": final})
    return sweep_dir


def lambda_sweep(dataset="digits", seeds=(0, 1, 2), **paper):
    return Sweep(
        name="lam",
        notebook=ROOT / "notebooks" / "02_train.ipynb",
        fixed={"dataset": dataset, "loss": "cc"},
        grid={"lam": [0.0, 1.0, 2.0]},
        seeds=list(seeds),
        paper={"table": "lambda", "match": {"lambda": "lam"}, "baseline": {"lam": 0.0}, **paper},
    )


ACC = {
    (0.0, 0): 90.0,
    (0.0, 1): 91.0,
    (0.0, 2): 95.0,
    (1.0, 0): 93.0,
    (1.0, 1): 93.5,
    (1.0, 2): 92.0,
    (2.0, 0): 80.0,
    (2.0, 1): 85.0,
    (2.0, 2): 82.5,
}


def acc(values):
    return ACC[(values["lam"], values["seed"])]


def test_aggregation_matches_a_hand_computation(tmp_path):
    sweep_dir = fake_sweep(tmp_path, lambda_sweep(), acc, ratio=lambda v: 0.5 - v["lam"] / 10 + v["seed"] / 100)
    table, spec = report_table(sweep_dir)
    assert list(table["lam"]) == [0.0, 1.0, 2.0] and list(table["n"]) == [3, 3, 3]
    for lam in (0.0, 1.0, 2.0):
        values = [ACC[(lam, s)] for s in range(3)]
        mean = sum(values) / 3
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (3 - 1))  # ddof = 1
        row = table[table["lam"] == lam].iloc[0]
        assert row["test_acc_mean"] == pytest.approx(mean) and row["test_acc_std"] == pytest.approx(std)
        assert row["test_intra_inter_mean"] == pytest.approx(0.5 - lam / 10 + 0.01)
        assert row["best_test_acc_mean"] == pytest.approx(mean + 1)
    assert table.loc[0, "test_acc_std"] == pytest.approx(2.6457513, abs=1e-6)  # 90, 91, 95
    assert table.loc[0, "dataset"] == "digits" and table.loc[0, "backbone"] == "resnet18"
    assert list(table["ours_delta"]) == pytest.approx([0.0, 92.8333333 - 92.0, 82.5 - 92.0], abs=1e-6)


def test_class_measures_are_averaged_and_shown_beside_accuracy(tmp_path):
    def measures(v):  # seed 0, 1, 2: P@1 90, 92, 94 - lam; MAP@R half of it; unseparated pairs 0, 1, 2
        return {"test_precision_at_1": 90.0 + 2 * v["seed"] - v["lam"], "test_map_at_r": (90.0 + 2 * v["seed"]) / 2,
                "test_unseparated_pairs": v["seed"], "test_knn_acc": 50.0}  # fmt: skip

    table, spec = report_table(fake_sweep(tmp_path, lambda_sweep(), acc, extra=measures))
    row = table[table["lam"] == 1.0].iloc[0]
    assert row["test_precision_at_1_mean"] == pytest.approx(91.0) and row["test_precision_at_1_std"] == pytest.approx(2)
    assert row["test_map_at_r_mean"] == pytest.approx(46.0) and row["test_unseparated_pairs_mean"] == pytest.approx(1)
    shown = format_report(table, spec).set_index("lam").loc["1"]
    assert shown["ours: P@1 (%)"] == "91.0 ± 2.0" and shown["ours: MAP@R (%)"] == "46.0 ± 1.0"
    assert shown["ours: unseparated pairs"] == "1.0 ± 1.0"
    assert "ours: attention 10-NN (%)" not in shown  # the older measure only for runs without P@1


def test_runs_from_before_precision_at_1_show_their_older_measures(tmp_path):
    table, spec = report_table(fake_sweep(tmp_path, lambda_sweep(), acc, extra=lambda v: {"test_knn_acc": 80.0}))
    shown = format_report(table, spec)
    assert list(shown["ours: attention 10-NN (%)"]) == ["80.0 ± 0.0"] * 3 and "ours: P@1 (%)" not in shown


def test_incomplete_points_are_left_out_and_named(tmp_path):
    sweep_dir = fake_sweep(tmp_path, lambda_sweep(), acc, incomplete=("lam=1,seed=2",))
    table, _ = report_table(sweep_dir)
    row = table[table["lam"] == 1.0].iloc[0]
    assert row["n"] == 2 and row["test_acc_mean"] == pytest.approx(93.25)
    assert row["test_acc_std"] == pytest.approx(math.sqrt(0.125))
    markdown = write_report(sweep_dir)["markdown"]
    assert "8 of 9 points complete" in markdown and "Not complete (1): lam=1,seed=2" in markdown


def test_single_seed_has_no_std(tmp_path):
    table, spec = report_table(fake_sweep(tmp_path, lambda_sweep(seeds=(0,)), acc))
    assert list(table["n"]) == [1, 1, 1] and table["test_acc_std"].isna().all()  # undefined, not 0
    assert list(format_report(table, spec)["ours: test acc (%)"]) == ["90.00", "93.00", "80.00"]


def test_nan_metric_values_are_counted_apart(tmp_path):
    """A run whose intra/inter ratio is NaN (all attention vectors identical) is not averaged in."""
    ratio = {0: 0.2, 1: float("nan"), 2: 0.4}
    table, spec = report_table(fake_sweep(tmp_path, lambda_sweep(), acc, ratio=lambda v: ratio[v["seed"]] + v["lam"]))
    row = table.iloc[0]
    assert row["test_intra_inter_n"] == 2 and row["n"] == 3 and row["test_acc_n"] == 3
    assert row["test_intra_inter_mean"] == pytest.approx(0.3) and row["test_intra_inter_std"] == pytest.approx(
        math.sqrt(0.02)
    )
    assert format_report(table, spec).loc[0, "ours: test intra/inter"] == "0.300 ± 0.141 [1 of 3 NaN]"


def test_collapsed_runs_are_counted_beside_the_ratio(tmp_path):
    """Runs flagged test_attention_collapsed keep their ratio in the mean, and the row says how many."""
    table, spec = report_table(
        fake_sweep(
            tmp_path,
            lambda_sweep(),
            acc,
            ratio=lambda v: 0.1 * (v["seed"] + 1),
            collapsed=lambda v: v["lam"] == 2.0 and v["seed"] > 0,
        )
    )
    assert table["collapsed"].tolist() == [0, 0, 2]
    text = format_report(table, spec)["ours: test intra/inter"].tolist()
    assert text[0] == text[1] == "0.200 ± 0.100" and text[2] == "0.200 ± 0.100 (2 of 3 collapsed)"


def test_digits_rows_have_no_paper_number(tmp_path):
    sweep_dir = fake_sweep(tmp_path, lambda_sweep(), acc)
    table, spec = report_table(sweep_dir)
    assert table["paper_acc"].isna().all() and table["diff"].isna().all()
    assert set(table["paper_note"]) == {"n/a (the paper has no digits experiment)"}
    shown = format_report(table, spec)
    assert set(shown["paper (%)"]) == {"n/a (the paper has no digits experiment)"}
    assert set(shown["ours − paper (pp)"]) == {"n/a"}
    assert "paper on other data (%)" not in shown  # no stand-in asked for


def test_stand_in_row_and_deltas_for_digits(tmp_path):
    sweep_dir = fake_sweep(tmp_path, lambda_sweep(stand_in={"dataset": "MNIST", "backbone": "VGG16+CAM"}), acc)
    table, spec = report_table(sweep_dir)
    assert list(table["paper_acc"]) == [97.66, 98.32, 97.53]  # MNIST, VGG16+CAM, lambda 0 / 1 / 2
    assert not table["paper_same_data"].any() and table["diff"].isna().all()
    assert list(table["paper_delta"]) == pytest.approx([0.0, 0.66, -0.13])
    shown = format_report(table, spec)
    assert shown.loc[1, "paper on other data (%)"] == "98.32 ± 0.08 (MNIST, VGG16+CAM)"
    assert shown.loc[1, "Δ paper vs lam=0 (pp)"] == "+0.66" and shown.loc[2, "Δ ours vs lam=0 (pp)"] == "-9.50"
    assert shown.loc[0, "ours: test acc (%)"] == "92.00 ± 2.65"


def test_same_dataset_gives_paper_number_and_difference(tmp_path):
    sweep = lambda_sweep(dataset="cifar100")
    sweep.fixed["backbone"] = "vgg16"
    table, spec = report_table(fake_sweep(tmp_path, sweep, acc))
    assert list(table["paper_acc"]) == [74.54, 75.49, 74.32] and list(table["paper_std"]) == [0.02, 0.15, 0.12]
    assert table["paper_same_data"].all()
    assert list(table["diff"]) == pytest.approx([92.0 - 74.54, 92.8333333 - 75.49, 82.5 - 74.32], abs=1e-6)
    shown = format_report(table, spec)
    assert shown.loc[1, "paper (%)"] == "75.49 ± 0.15" and shown.loc[1, "ours − paper (pp)"] == "+17.34"


def test_paper_lookup_maps_loss_backbone_cam_and_dataset():
    cam_table = {"table": "cam"}
    assert (
        paper_lookup(cam_table, {"loss": "ce", "cam": False, "backbone": "vgg16", "dataset": "mnist"})["acc"] == 97.43
    )
    hit = paper_lookup(cam_table, {"loss": "ce", "cam": True, "backbone": "resnet18", "dataset": "cifar100"})
    assert (hit["acc"], hit["std"], hit["backbone"]) == (77.57, 0.01, "ResNet18+CAM")
    assert (
        paper_lookup(cam_table, {"loss": "cc", "cam": True, "backbone": "resnet18", "dataset": "cars196"})["acc"]
        == 88.41
    )
    losses = {"table": "losses"}
    missing = paper_lookup(losses, {"loss": "mcloss", "cam": False, "backbone": "resnet18", "dataset": "cars196"})
    assert math.isnan(missing["acc"]) and missing["note"] == "not reported in the paper"
    assert (
        paper_lookup(losses, {"loss": "fical", "cam": False, "backbone": "vgg16", "dataset": "cifar100"})["acc"]
        == 74.98
    )
    absent = paper_lookup(losses, {"loss": "focal", "cam": True, "backbone": "vgg16", "dataset": "mnist"})
    assert math.isnan(absent["acc"]) and "not in the paper's losses table" in absent["note"]
    # a value the paper did not run (lambda = 0.03; the first filter leaves no row): a note, not an error
    lam = {"table": "lambda", "match": {"lambda": "lam"}, "stand_in": {"dataset": "MNIST", "backbone": "VGG16+CAM"}}
    unrun = paper_lookup(lam, {"lam": 0.03, "backbone": "resnet18", "cam": True, "dataset": "mnist5k"})
    assert math.isnan(unrun["acc"]) and "not in the paper's lambda table" in unrun["note"]
    assert paper_lookup(lam, {"lam": 1.0, "backbone": "resnet18", "cam": True, "dataset": "mnist5k"})["acc"] == 98.32
    # the group-size sweep: our group_size is the paper's batch_size
    group = {"table": "batch_size", "match": {"batch_size": "group_size"}}
    assert (
        paper_lookup(
            group, {"group_size": 16, "backbone": "vgg16", "cam": True, "dataset": "cars196", "batch_size": 128}
        )["acc"]
        == 91.5
    )


def test_categorical_sweep_baseline_per_backbone(tmp_path):
    sweep = Sweep(
        name="cam",
        notebook=ROOT / "notebooks" / "02_train.ipynb",
        fixed={"dataset": "mnist"},
        points=[{"loss": "ce", "cam": False}, {"loss": "ce", "cam": True}, {"loss": "cc", "cam": True}],
        grid={"backbone": ["vgg16", "resnet18"]},
        seeds=[0, 1],
        paper={"table": "cam", "baseline": {"loss": "ce", "cam": False}},
    )
    scores = {"ce": 97.0, "cc": 98.0}
    sweep_dir = fake_sweep(
        tmp_path,
        sweep,
        lambda v: (
            scores[v["loss"]]
            + (0.5 if v["cam"] and v["loss"] == "ce" else 0)
            + (1 if v["backbone"] == "vgg16" else 0)
            + v["seed"] / 10
        ),
    )
    table, spec = report_table(sweep_dir)
    assert len(table) == 6 and list(table["n"]) == [2] * 6
    assert list(table["paper_acc"]) == [97.43, 97.52, 97.66, 97.67, 98.32, 98.52]
    assert list(table["ours_delta"]) == pytest.approx([0, 0, 0.5, 0.5, 1.0, 1.0])
    assert list(table["paper_delta"]) == pytest.approx(
        [0, 0, 97.66 - 97.43, 97.67 - 97.52, 98.32 - 97.43, 98.52 - 97.52]
    )
    labels = [group_label(row, ["loss", "cam"]) for _, row in table.iterrows()]
    assert labels == ["CE", "CE", "CE+CAM", "CE+CAM", "CC-Loss+CAM", "CC-Loss+CAM"]


def test_write_report_files_and_cli(tmp_path):
    sweep_dir = fake_sweep(tmp_path, lambda_sweep(stand_in={"dataset": "MNIST", "backbone": "VGG16+CAM"}), acc)
    result = subprocess.run(
        [sys.executable, "-m", "experiments", "report", str(sweep_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "| lam | n | ours: test acc (%) |" in result.stdout
    assert "| 1 | 3 | 92.83 ± 0.76 |" in result.stdout
    csv = pd.read_csv(sweep_dir / "report.csv")
    assert list(csv["n"]) == [3, 3, 3] and csv.loc[1, "paper_acc"] == 98.32
    md = (sweep_dir / "report.md").read_text()
    assert md.startswith("# Sweep `lam`") and "ICPR 2020" in md and "Fixed: dataset digits" in md
    missing = subprocess.run(
        [sys.executable, "-m", "experiments", "report", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert missing.returncode == 2 and "sweep.json is missing" in missing.stderr


def test_export_copies_only_small_files(tmp_path):
    sweep_dir = fake_sweep(tmp_path / "runs", lambda_sweep(), acc, incomplete=("lam=2,seed=0",))
    write_report(sweep_dir)
    target = export_results(sweep_dir, tmp_path / "results", command="python -m experiments sweep x.yaml")
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert "lam=0,seed=0/metrics.json" in files and "sweep.json" in files and "report.md" in files
    assert not any(f.endswith((".pt", ".ipynb")) for f in files)
    # a failed point keeps its record (a NaN loss is a result), but no config or metrics
    assert sorted(p.name for p in (target / "lam=2,seed=0").iterdir()) == ["point.json"]
    assert read_json(target / "lam=2,seed=0" / "point.json")["status"] == "failed"
    assert (target / "COMMAND.txt").read_text() == "python -m experiments sweep x.yaml\n"
    assert "point_dir" not in read_json(target / "lam=0,seed=0" / "point.json")
    # the exported folder is itself a sweep folder the report reads
    table, _ = report_table(target)
    assert list(table["n"]) == [3, 3, 2]


def test_export_leaves_out_points_still_running(tmp_path):
    sweep_dir = fake_sweep(tmp_path / "runs", lambda_sweep(), acc, incomplete=("lam=2,seed=0",))
    running = sweep_dir / "lam=2,seed=0" / "point.json"
    write_json(running, {**read_json(running), "status": "running"})
    target = export_results(sweep_dir, tmp_path / "results")
    assert not (target / "lam=2,seed=0").exists() and (target / "lam=2,seed=1" / "metrics.json").exists()


def test_plots_and_paper_curves(tmp_path):
    sweep_dir = fake_sweep(
        tmp_path,
        lambda_sweep(stand_in={"dataset": "MNIST", "backbone": "VGG16+CAM"}),
        acc,
        ratio=lambda v: 0.5 - v["lam"] / 10,
    )
    table, spec = report_table(sweep_dir)
    curves = paper_curves(table, spec)
    assert list(curves) == ["MNIST, VGG16+CAM", "CIFAR-100, VGG16+CAM", "Cars-196, VGG16+CAM"]
    assert list(curves["Cars-196, VGG16+CAM"]["delta"]) == pytest.approx([0.0, 91.46 - 88.15, 87.84 - 88.15])
    fig = plot_ablation(table, spec, "lam", path=tmp_path / "fig" / "lam.png", xlabel="λ")
    assert len(fig.axes) == 3 and (tmp_path / "fig" / "lam.png").stat().st_size > 0
    fig = plot_categories(table, spec, path=tmp_path / "fig" / "cat.png")
    assert len(fig.axes) == 2 and (tmp_path / "fig" / "cat.png").exists()
    import matplotlib.pyplot as plt

    plt.close("all")


def test_paper_main_table_layout(tmp_path):
    losses = ["ce", "focal", "asoftmax", "mcloss", "ical", "fical", "cc"]
    sweep = Sweep(
        name="losses",
        notebook=ROOT / "notebooks" / "02_train.ipynb",
        fixed={"dataset": "digits"},
        points=[{"loss": loss, "cam": loss == "cc"} for loss in losses],
        seeds=[0, 1],
        paper={"table": "losses", "stand_in": {"dataset": "MNIST"}, "baseline": {"loss": "ce", "cam": False}},
    )
    sweep_dir = fake_sweep(tmp_path, sweep, lambda v: 90 + losses.index(v["loss"]) + v["seed"])
    table, spec = report_table(sweep_dir)
    assert list(table["paper_acc"]) == [97.52, 97.68, 98.32, 98.45, 98.21, 98.40, 98.52]  # MNIST, ResNet18(+CAM)
    main = paper_main_table(table)
    assert list(main["loss"]) == ["CE", "Focal", "A-Softmax", "MC-Loss", "ICAL", "FICAL (reconstruction)", "CC-Loss"]
    assert main.columns[1] == "ours: digits ResNet18"
    assert [c for c in main.columns if c.startswith("paper:")] == [
        "paper: MNIST VGG16",
        "paper: MNIST ResNet18",
        "paper: CIFAR-100 VGG16",
        "paper: CIFAR-100 ResNet18",
        "paper: Cars-196 VGG16",
        "paper: Cars-196 ResNet18",
    ]
    cc = main[main["loss"] == "CC-Loss"].iloc[0]
    assert cc["paper: CIFAR-100 ResNet18"] == "78.23 ± 0.07"
    assert main[main["loss"] == "MC-Loss"].iloc[0]["paper: Cars-196 ResNet18"] == "not reported"
    assert cc["ours: digits ResNet18"] == "96.50 ± 0.71 (n=2)"


def test_a_form_set_on_some_points_only_keeps_every_row_against_the_baseline(tmp_path):
    """small_cam: CE points set no form, CC-Loss points the ratio or none (the default): each row's change
    is still taken against plain CE, labelled by its form, and an unset form shows empty."""
    points = [{"loss": "ce", "cam": False}, {"loss": "ce", "cam": True}]
    points += [{"loss": "cc", "cam": True, "form": "ratio"}, {"loss": "cc", "cam": True}]
    sweep = Sweep(
        name="cam", notebook=ROOT / "notebooks" / "02_train.ipynb", fixed={"dataset": "mnist"}, points=points,
        seeds=[0, 1], paper={"table": "cam", "baseline": {"loss": "ce", "cam": False}},
    )  # fmt: skip
    scores = {(False, None): 97.0, (True, None): 97.5, (True, "ratio"): 98.25}
    table, spec = report_table(fake_sweep(tmp_path, sweep, lambda v: scores[(v["cam"], v.get("form"))] + v["seed"]))
    assert list(table["ours_delta"]) == pytest.approx([0.0, 0.5, 1.25, 0.5])
    labels = [group_label(row, spec["varied"]) for _, row in table.iterrows()]
    assert labels == ["CE", "CE+CAM", "CC-Loss+CAM (ratio)", "CC-Loss+CAM"]
    assert list(format_report(table, spec)["form"]) == ["", "", "ratio", ""]
