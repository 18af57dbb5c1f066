"""Nothing lost under faults (issue 21): truncated or garbled run files, a full disk mid-write, SIGTERM.
Each fault is made for real (bytes cut, ENOSPC raised from inside the write, a signal sent to a
process) and the recovery is checked against an uninterrupted run of the same config."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ccloss import train as train_module
from ccloss.runtime import atomic
from ccloss.runtime import checkpoint as ckpt
from ccloss.runtime.atomic import DiskFullError, read_json
from ccloss.runtime.checkpoint import CorruptRunError, load_run
from ccloss.train import TrainConfig, fit
from tests.helpers import ROOT, cli, wait_for_epochs, without_timings

TINY = dict(dataset="digits", width_mult=0.125, batch_size=64, quiet=True, epochs=3)


class Crash(Exception):
    """Stands for the process dying between two epochs."""


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The uninterrupted run every recovery must equal."""
    return fit(TrainConfig(**TINY, out=str(tmp_path_factory.mktemp("ref") / "run")))


def crashed_run(out: Path, monkeypatch, after_epochs: int) -> Path:
    """A run directory left by a process that died after ``after_epochs`` epochs."""
    real = train_module._run_epoch

    def dying(run, epoch):
        real(run, epoch)
        if epoch + 1 == after_epochs:
            raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "_run_epoch", dying)
        with pytest.raises(Crash):
            fit(TrainConfig(**TINY, out=str(out)))
    return out


def resume(out: Path) -> dict:
    return fit(TrainConfig(**TINY, out=str(out), resume=True))


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, monkeypatch, reference):
    out = crashed_run(tmp_path / "run", monkeypatch, after_epochs=2)
    assert torch.load(out / "checkpoint.prev.pt", weights_only=False)["epoch"] == 0
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 3])  # cut short, as by a dying disk or copy
    with pytest.warns(UserWarning, match=r"checkpoint\.pt cannot be read .*resuming from .*checkpoint\.prev\.pt"):
        resumed = resume(out)
    assert without_timings(resumed) == without_timings(reference)
    assert (out / "checkpoint.pt.unreadable").exists()  # set aside for inspection, not silently overwritten


def test_garbage_checkpoint_without_a_previous_one_is_an_error_naming_it(tmp_path, monkeypatch):
    out = crashed_run(tmp_path / "run", monkeypatch, after_epochs=1)
    assert not (out / "checkpoint.prev.pt").exists()  # after one epoch there is no previous checkpoint
    (out / "checkpoint.pt").write_bytes(b"\x00garbage" * 100)
    before = sorted((p.name, p.stat().st_size) for p in out.iterdir())
    with pytest.raises(CorruptRunError, match=r"checkpoint\.pt cannot be read.*No readable checkpoint.*--overwrite"):
        resume(out)
    assert sorted((p.name, p.stat().st_size) for p in out.iterdir()) == before  # nothing restarted or written
    result = cli("train", "--dataset", "digits", "--width-mult", "0.125", "--batch-size", "64", "--epochs", "3",
                 "--quiet", "--out", str(out), "--resume")  # fmt: skip
    assert result.returncode == 2 and "checkpoint.pt cannot be read" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_checkpoint_of_something_else_is_named_too(tmp_path, monkeypatch):
    out = crashed_run(tmp_path / "run", monkeypatch, after_epochs=1)
    torch.save({"model": {}}, out / "checkpoint.pt")
    with pytest.raises(CorruptRunError, match="is not a ccloss checkpoint \\(it lacks optimizer"):
        resume(out)


@pytest.mark.parametrize("name", ["metrics.json", "config.json"])
def test_garbled_json_is_rebuilt_from_the_checkpoint(tmp_path, monkeypatch, reference, name):
    out = crashed_run(tmp_path / "run", monkeypatch, after_epochs=1)
    (out / name).write_text('{"status": "runn')  # cut mid-write by something that is not ccloss
    with pytest.warns(UserWarning, match=rf"{name.replace('.', '[.]')} cannot be read .* rebuilt from the checkpoint"):
        resumed = resume(out)
    assert without_timings(resumed) == without_timings(reference)
    assert read_json(out / "config.json")["epochs"] == 3


def test_metrics_without_any_checkpoint_is_not_silently_restarted(tmp_path, monkeypatch):
    out = crashed_run(tmp_path / "run", monkeypatch, after_epochs=1)
    (out / "checkpoint.pt").unlink()
    with pytest.raises(CorruptRunError, match="records 1 epoch\\(s\\) but no checkpoint is left.*--overwrite"):
        resume(out)
    assert len(read_json(out / "metrics.json")["history"]) == 1


def test_load_run_of_a_finished_run_with_a_bad_checkpoint_says_what_to_do(tmp_path):
    out = tmp_path / "run"
    fit(TrainConfig(**{**TINY, "epochs": 1}, out=str(out)))
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptRunError, match="cannot load .*checkpoint.pt cannot be read.*--overwrite"):
        load_run(out)


def _full_disk_after(monkeypatch, target: str, calls_before_failing: int):
    """Make the ``target`` writer ("torch" for checkpoints, "json" for metrics) write half its bytes and then
    fail with ENOSPC, from its ``calls_before_failing + 1``-th call on."""
    calls = {"n": 0}
    module, name = (ckpt.torch, "save") if target == "torch" else (atomic.json, "dump")
    real = getattr(module, name)

    def writer(obj, handle, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= calls_before_failing:
            return real(obj, handle, *args, **kwargs)
        handle.write(b"\x00" * 64 if "b" in getattr(handle, "mode", "") else "{")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(module, name, writer)


@pytest.mark.parametrize("target", ["torch", "json"])
def test_a_full_disk_stops_the_run_and_keeps_the_last_good_files(tmp_path, monkeypatch, reference, target):
    out = tmp_path / "run"
    # checkpoints: epoch 2's write fails; metrics: epoch 2's metrics.json fails (its checkpoint is written)
    with monkeypatch.context() as patch:
        _full_disk_after(patch, target, calls_before_failing=1 if target == "torch" else 3)
        with pytest.raises(DiskFullError, match="no space left on the device while writing") as error:
            fit(TrainConfig(**TINY, out=str(out)))
    assert "is intact" in str(error.value) and "--resume" in str(error.value)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written file left behind
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    history = read_json(out / "metrics.json")["history"]
    assert saved["epoch"] == (0 if target == "torch" else 1) and len(history) == 1
    assert without_timings(resume(out)) == without_timings(reference)


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def recording(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", recording)
    atomic.write_json(tmp_path / "a.json", {"x": 1})
    assert synced == [False, True]  # the file's data, then the folder's entry


def test_sigterm_ends_the_run_after_the_epoch_with_a_checkpoint(tmp_path):
    """Through the CLI, as SLURM would stop it (one thread, as tests.helpers.cli runs the reference)."""
    out = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--width-mult", "0.125", "--batch-size", "64", "--epochs", "3",
            "--quiet", "--out"]  # fmt: skip
    assert cli(*args, str(tmp_path / "full")).returncode == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "ccloss", *args, str(out)],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_epochs(out, 1, process)
    process.send_signal(signal.SIGTERM)  # it finishes the epoch under way (the 1st or the 2nd), saves, stops
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr
    stopped = read_json(out / "metrics.json")
    done = len(stopped["history"])
    assert stopped["status"] == "running" and done in (1, 2)
    assert f"stopped: SIGTERM: stopped after epoch {done} of 3" in stderr and "--resume" in stderr
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == done - 1
    resumed = cli(*args, str(out), "--resume")
    assert resumed.returncode == 0 and "Warning" not in resumed.stderr, (
        resumed.stderr
    )  # a clean stop: nothing to repair
    full = read_json(tmp_path / "full" / "metrics.json")
    assert without_timings(read_json(out / "metrics.json")) == without_timings(full)
