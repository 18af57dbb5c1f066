"""The training loop, run directories and resume after SIGKILL (on the digits). The CLI's own tests are in
test_cli.py, TrainConfig's in test_config.py."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ccloss import config as config_module
from ccloss import train as train_module
from ccloss.config import TrainConfig
from ccloss.losses import build_criterion
from ccloss.runtime.atomic import read_json, write_json
from ccloss.train import NonFiniteLossError, RunExistsError, fit, is_complete, load_run
from tests.helpers import KILLED_RUN_ARGS, built_once, cli, uninterrupted_cli_run, wait_for_epochs, without_timings

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(dataset="digits", width_mult=0.125, batch_size=64, quiet=True)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """A finished 2-epoch run (trained once for all workers; read it, never write into it)."""
    folder = built_once(tmp_path_factory, "train-ref", lambda f: fit(TrainConfig(**TINY, epochs=2, out=str(f / "run"))))
    return folder / "run", read_json(folder / "run" / "metrics.json")


def test_run_directory_contents(reference_run):
    out, metrics = reference_run
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.prev.pt",
        "checkpoint.pt",
        "config.json",
        "metrics.json",
    ]
    assert torch.load(out / "checkpoint.prev.pt", weights_only=False)["epoch"] == 0  # the one before the last
    assert metrics["status"] == "complete" and is_complete(out)
    assert len(metrics["history"]) == 2
    record = metrics["history"][-1]
    for key in (
        "epoch",
        "loss",
        "ce",
        "cc",
        "d_intra",
        "d_inter",
        "train_acc",
        "test_acc",
        "test_intra_inter",
        "lr",
        "seconds",
        "images_per_sec",
    ):
        assert key in record, key
    lam = metrics["loss_hparams"]["lam"]  # the default lambda, recorded with the run
    assert lam == build_criterion("cc", 10).lam
    assert record["loss"] == pytest.approx(record["ce"] + lam * record["cc"], rel=1e-5)
    final = metrics["final"]
    assert final["test_acc"] == record["test_acc"]
    assert final["best_test_acc"] == max(r["test_acc"] for r in metrics["history"])
    assert 0 <= final["test_intra_inter"] < 2
    assert TrainConfig.from_dict(read_json(out / "config.json")) == TrainConfig(**TINY, epochs=2, out=str(out))


def test_same_seed_is_bit_for_bit_repeatable(reference_run, tmp_path):
    _, first = reference_run
    second = fit(TrainConfig(**TINY, epochs=2, out=str(tmp_path / "again")))
    assert without_timings(second) == without_timings(first)
    third = fit(TrainConfig(**TINY, epochs=2, seed=1, out=str(tmp_path / "other")))
    assert without_timings(third) != without_timings(first)


def test_load_run_rebuilds_the_trained_model(reference_run):
    out, metrics = reference_run
    config, loaded_metrics, model = load_run(out)
    assert loaded_metrics == metrics and config.loss == "cc" and not model.training
    from ccloss import data
    from ccloss.loader import TensorLoader

    images, labels = data.load_tensors("digits", "test")
    loader = TensorLoader(images, labels, 512, train=False, info=data.dataset_info("digits"))
    evaluation = train_module.evaluate(model, loader, torch.device("cpu"))
    correct = sum(int(row.argmax()) == int(label) for row, label in zip(evaluation["logits"], evaluation["labels"]))
    assert evaluation["accuracy"] == pytest.approx(100.0 * correct / len(labels), abs=1e-9)  # beside the tensors
    assert evaluation["accuracy"] == pytest.approx(metrics["final"]["test_acc"], abs=1e-4)  # the record's: float32


def test_existing_run_needs_resume_or_overwrite(reference_run, tmp_path):
    out, metrics = reference_run
    with pytest.raises(RunExistsError, match="--resume"):
        fit(TrainConfig(**TINY, epochs=2, out=str(out)))
    # resuming a finished run just loads it
    assert fit(TrainConfig(**TINY, epochs=2, out=str(out), resume=True)) == metrics
    with pytest.raises(ValueError, match="lr"):
        fit(TrainConfig(**TINY, epochs=2, lr=0.05, out=str(out), resume=True))


def test_a_run_trained_under_other_loss_defaults_is_not_silently_reused(reference_run, tmp_path):
    """config.json says lam = None (the default); a run whose metrics.json records another lam (trained before
    the default moved) must not be resumed as if it were this one."""
    out = tmp_path / "run"
    shutil.copytree(reference_run[0], out)
    metrics = read_json(out / "metrics.json")
    now = metrics["loss_hparams"]["lam"]
    metrics["loss_hparams"]["lam"] = now + 0.5
    write_json(out / "metrics.json", metrics)
    with pytest.raises(ValueError, match=f"other loss hyperparameters \\(lam: {now + 0.5} -> {now}\\)"):
        fit(TrainConfig(**TINY, epochs=2, out=str(out), resume=True))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, tmp_path_factory):
    args = KILLED_RUN_ARGS
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "ccloss", *args, str(out)],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,
    )
    wait_for_epochs(out, 1, process)
    time.sleep(0.5)  # well into the second epoch
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    partial = read_json(out / "metrics.json")
    assert partial["status"] == "running" and 1 <= len(partial["history"]) < 3
    resumed = cli(*args, str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    full = uninterrupted_cli_run(tmp_path_factory)
    assert without_timings(read_json(out / "metrics.json")) == without_timings(full)


def test_nan_loss_stops_with_epoch_and_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    real_build = config_module.build_criterion  # what build_for_config calls

    def poisoned(name, num_classes, **params):
        criterion = real_build(name, num_classes, **params)
        real_forward = criterion.forward

        def forward(output, labels, step=0):
            result = real_forward(output, labels, step=step)
            if step == 25:  # the 5th step of epoch 2 (21 steps per epoch at batch 64)
                result.loss = result.loss * float("nan")
            return result

        criterion.forward = forward
        return criterion

    monkeypatch.setattr(config_module, "build_criterion", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 5 of 21 \(global step 26\)"):
        fit(TrainConfig(**TINY, epochs=3, out=str(out)))
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
    assert checkpoint["epoch"] == 0 and not checkpoint["complete"]
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())
    assert read_json(out / "metrics.json")["status"] == "running"


def test_cc_without_cam_is_refused(tmp_path):
    message = "CC-Loss needs the channel attention vectors: build the model with the CAM (cam=True)"
    with pytest.raises(ValueError, match=re.escape(message)):
        fit(TrainConfig(**TINY, epochs=1, cam=False, out=str(tmp_path / "x")))


def test_tiny_width_trains_with_the_default_channels_last(tmp_path, capsys):
    """width 0.0625 has a 4-channel 1x1 strided shortcut: channels_last would crash torch on the CPU,
    so the loop keeps the default memory format, says so, and trains."""
    config = TrainConfig(**{**TINY, "width_mult": 0.0625, "quiet": False}, epochs=1, out=str(tmp_path / "x"))
    assert config.channels_last
    metrics = fit(config)
    assert metrics["status"] == "complete" and "channels_last is off" in capsys.readouterr().out


def test_a_run_made_without_channels_last_is_loaded_with_the_new_default(tmp_path):
    """Run directories from before channels_last became the default stay usable."""
    out = tmp_path / "old"
    first = fit(TrainConfig(**TINY, epochs=1, channels_last=False, out=str(out)))
    again = fit(TrainConfig(**TINY, epochs=1, out=str(out), resume=True))
    assert again["final"] == first["final"]


def test_a_finished_run_records_the_class_structure_of_its_attention(reference_run):
    """The measures of ccloss.measures, recomputed by hand from the saved model: the evaluation
    split's attention vectors against the training split's (no augmentation)."""
    from ccloss import data
    from ccloss.loader import TensorLoader
    from ccloss.measures import class_structure
    from ccloss.runtime.devices import to_channels_last

    out, metrics = reference_run
    final = metrics["final"]
    model, _ = to_channels_last(load_run(out)[2], "cpu")  # as the run evaluated it: the same rounding
    info = data.dataset_info("digits")

    def attention_of(split):
        images, labels = data.load_tensors("digits", split)
        loader = TensorLoader(images, labels, 512, train=False, info=info, channels_last=True)
        evaluation = train_module.evaluate(model, loader, torch.device("cpu"))
        return evaluation["attention"], evaluation["labels"]

    expected = class_structure(*attention_of("train"), *attention_of("test"), split="test")
    for key, value in expected.items():
        if key == "test_class_distances":
            assert torch.tensor(final[key]).double() == pytest.approx(torch.tensor(value).double(), rel=1e-6)
        elif isinstance(value, list):
            assert final[key] == value, key
        else:
            assert final[key] == pytest.approx(value, rel=1e-6), key
    assert final["class_measures_seconds"] >= 0
    assert "test_knn_acc" in metrics["history"][-1] and "test_knn_acc" not in metrics["history"][0]


def test_class_measures_can_be_skipped_and_use_train_minus_val_on_val(tmp_path):
    skipped = fit(TrainConfig(**TINY, epochs=1, out=str(tmp_path / "off"), class_measures=False))
    assert "test_knn_acc" not in skipped["final"] and "class_measures_seconds" not in skipped["final"]
    on_val = fit(TrainConfig(**TINY, epochs=1, eval_split="val", out=str(tmp_path / "val")))
    assert {"val_knn_acc", "val_probe_acc", "val_unseparated_pairs", "val_pair_geometry_min"} <= set(on_val["final"])
    ce = fit(TrainConfig(**TINY, epochs=1, loss="ce", cam=False, out=str(tmp_path / "nocam")))
    assert "test_knn_acc" not in ce["final"]  # no attention vectors: nothing to measure


def test_the_attention_scale_at_initialisation_is_recorded_as_the_collapse_reference(reference_run):
    """``test_d_inter_init``: d_inter (mean squared distance between the attention vectors of two images of
    different classes, here by an explicit pair loop) of the model before its first step, seeded as fit seeds it."""
    from ccloss import data
    from ccloss.config import build_for_config
    from ccloss.loader import TensorLoader
    from ccloss.runtime.checkpoint import seed_everything

    _, metrics = reference_run
    seed_everything(0)
    _, model = build_for_config(TrainConfig(**TINY), data.dataset_info("digits"), torch.device("cpu"))
    images, labels = data.load_tensors("digits", "test")
    loader = TensorLoader(images, labels, 512, train=False, info=data.dataset_info("digits"))
    a = train_module.evaluate(model, loader)["attention"].double()
    total, pairs = 0.0, 0
    for i in range(len(a)):
        other = labels != labels[i]
        total += float(((a[other] - a[i]) ** 2).sum())
        pairs += int(other.sum())
    by_hand = total / pairs
    assert 0 < by_hand < 1e-3  # the SE attention starts in a narrow band around 0.5
    for record in metrics["history"]:
        assert record["test_d_inter_init"] == pytest.approx(by_hand, rel=1e-4)
        assert record["test_attention_collapsed"] is False
