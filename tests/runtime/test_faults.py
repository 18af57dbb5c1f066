"""Nothing lost under faults (issues 21 and 26): truncated or garbled run files, a real full disk (a tmpfs that
fills up), a write killed by SIGKILL, bad path arguments, SIGTERM once and twice. Each fault is made for real
and the recovery is checked against an uninterrupted run of the same config."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ccloss import train as train_module
from ccloss.runtime import atomic
from ccloss.runtime.atomic import DiskFullError, read_json
from ccloss.runtime.checkpoint import CorruptRunError, PathArgumentError, load_run
from ccloss.runtime.preemption import ACKNOWLEDGED
from ccloss.train import TrainConfig, fit
from tests.helpers import (
    KILLED_RUN_ARGS,
    ROOT,
    built_once,
    cli,
    uninterrupted_cli_run,
    wait_for_epochs,
    without_timings,
)

TINY = dict(dataset="digits", width_mult=0.125, batch_size=64, quiet=True, epochs=3)


class Crash(Exception):
    """Stands for the process dying between two epochs."""


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The uninterrupted run every recovery must equal (trained once for all workers)."""
    folder = built_once(tmp_path_factory, "faults-reference", lambda f: fit(TrainConfig(**TINY, out=str(f / "run"))))
    return read_json(folder / "run" / "metrics.json")


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
    with pytest.warns(
        UserWarning, match=r"checkpoint\.pt cannot be read .*resuming from .*checkpoint\.prev\.pt"
    ) as seen:
        resumed = resume(out)
    assert {w.filename for w in seen} == {__file__}  # the user's code (here: this test), not the package's source
    assert without_timings(resumed) == without_timings(reference)
    assert (out / "checkpoint.pt.unreadable").exists()  # set aside for inspection, not silently overwritten


def test_garbage_checkpoint_without_a_previous_one_is_an_error_naming_it(tmp_path, monkeypatch):
    out = crashed_run(tmp_path / "run", monkeypatch, after_epochs=1)
    assert not (out / "checkpoint.prev.pt").exists()  # after one epoch there is no previous checkpoint
    (out / "checkpoint.pt").write_bytes(b"\x00garbage" * 100)
    before = sorted((p.name, p.stat().st_size) for p in out.iterdir())
    with pytest.raises(
        CorruptRunError, match=r"checkpoint\.pt cannot be read.*No readable checkpoint.*--overwrite"
    ) as error:
        resume(out)
    assert str(error.value) == (
        f"{out / 'checkpoint.pt'} cannot be read (truncated or garbled, 800 bytes). No readable "
        f"checkpoint is left in {out}: delete the folder or pass --overwrite (overwrite=True) to "
        "train it again"
    )  # no torch internals (miniz, PytorchStreamReader)
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
    with pytest.warns(
        UserWarning, match=rf"{name.replace('.', '[.]')} cannot be read .* rebuilt from the checkpoint"
    ) as seen:
        resumed = resume(out)
    assert {w.filename for w in seen} == {__file__}
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


def _mount_tmpfs(folder: Path, options: str) -> None:
    """A real tmpfs at ``folder`` (root or CAP_SYS_ADMIN needed: CI runs as root); the test is skipped, saying
    why, where mounting is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    result = subprocess.run([mount or "mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                            capture_output=True, text=True) if mount else None  # fmt: skip
    if result is None or result.returncode != 0:
        pytest.skip(f"a real full or read-only disk needs a tmpfs mount, refused here ({result and result.stderr})")


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MB tmpfs: a real disk that fills up."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=8m")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` with a file until ``leave`` bytes stay free."""
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, shutil.disk_usage(disk).free - leave))
    return filler


def test_a_real_full_disk_mid_training_is_a_clear_error_and_nothing_partial(small_disk, monkeypatch, reference):
    """The disk fills up after epoch 1 (a file written by someone else); epoch 2's checkpoint does not fit."""
    out, real = small_disk / "run", train_module._run_epoch

    def filling(run, epoch):
        real(run, epoch)
        if epoch == 0:
            _fill(small_disk, leave=512 * 1024)

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "_run_epoch", filling)
        with pytest.raises(DiskFullError) as error:
            fit(TrainConfig(**TINY, out=str(out)))
    message = str(error.value.strerror)
    print(message)
    assert re.fullmatch(rf"no space left on the device while writing {re.escape(str(out / 'checkpoint.pt'))} "
                        r"\(1\.\d\d MB to write, 0\.\d\d MB free\); the previous checkpoint\.pt is intact: free some "
                        r"space, then rerun \(a run resumes with --resume\)", message), message  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.json"]  # no .tmp
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 0  # whole, the last good one
    assert len(read_json(out / "metrics.json")["history"]) == 1
    (small_disk / "filler").unlink()
    assert without_timings(resume(out)) == without_timings(reference)


@pytest.mark.parametrize("writer", ["torch.save into the file", "bytes of unknown size", "json"])
def test_whatever_the_writer_reports_a_full_disk_is_disk_full_error(small_disk, writer):
    """torch's zip writer says "unexpected pos", a plain write ENOSPC, a JSON file is sized first: each is
    DiskFullError naming the file; the old file stays whole and no temporary file is left."""
    path = small_disk / ("metrics.json" if writer == "json" else "weights.pt")
    atomic.write_json(path, {"old": 1}) if writer == "json" else atomic.atomic_write(
        path, lambda f: f.write(b"old"), "wb"
    )
    _fill(small_disk, leave=2 * 1024 * 1024)
    big = torch.zeros(1_000_000)  # 4 MB
    with pytest.raises(DiskFullError, match=rf"while writing {re.escape(str(path))} .*previous {path.name} is intact"):
        if writer == "json":
            atomic.write_json(path, big.tolist())
        elif writer == "bytes of unknown size":
            atomic.atomic_write(path, lambda f: f.write(b"x" * 4_000_000), "wb")
        else:
            with pytest.raises(RuntimeError, match="unexpected pos"):  # what torch says on this disk
                torch.save(big, small_disk / "direct.pt")
            atomic.atomic_write(path, lambda f: torch.save(big, f), "wb")
    assert sorted(p.name for p in small_disk.iterdir() if p.name != "direct.pt") == sorted(["filler", path.name])
    assert (read_json(path) == {"old": 1}) if writer == "json" else path.read_bytes() == b"old"


def test_temporary_files_of_a_write_killed_by_sigkill_are_removed_at_the_next_start(tmp_path, monkeypatch, reference):
    out = crashed_run(tmp_path / "run", monkeypatch, after_epochs=1)
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out / "checkpoint.pt")], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert [p.name for p in out.glob(".checkpoint.pt.*.tmp")], "the killed write left no temporary file"
    assert without_timings(resume(out)) == without_timings(reference)
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.prev.pt",
        "checkpoint.pt",
        "config.json",
        "metrics.json",
    ]


#: Half a checkpoint written through atomic_write, then a pause in which the test kills the process.
KILLED_WRITER = """
import sys, time
from ccloss.runtime.atomic import atomic_write

def write(handle):
    handle.write(b"x" * 100_000)
    handle.flush()
    print("writing", flush=True)
    time.sleep(120)

atomic_write(sys.argv[1], write, "wb")
"""


def test_every_path_argument_is_checked_before_the_data_loads(tmp_path, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the paths were checked")

    monkeypatch.setattr(train_module.datasets, "loaders_for", no_data)
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    (tmp_path / "random.pt").write_bytes(os.urandom(4096))
    weights = "give a state dict saved with torch.save, or 'imagenet'"
    missing, garbage = tmp_path / "missing.pt", tmp_path / "random.pt"
    cases = [
        (dict(out=str(a_file)), f"--out {a_file}: a file, not a folder; give a folder for the run (made if missing)"),
        (dict(out=str(a_file / "run")),
         f"--out {a_file / 'run'}: {a_file} is a file, no folder can be made in it; give another --out"),
        (dict(pretrained=str(missing)), f"--pretrained {missing}: pretrained weights not found; {weights}"),
        (dict(pretrained=str(garbage)),
         f"--pretrained {garbage}: not a PyTorch weights file (truncated, or something else); {weights}"),
        (dict(data_dir=str(a_file)), f"--data-dir {a_file}: a file, not a folder; give the folder of the datasets"),
    ]  # fmt: skip
    for values, message in cases:
        config = TrainConfig(**{**TINY, "out": str(tmp_path / "ok"), **values})
        with pytest.raises(PathArgumentError) as error:
            fit(config)
        assert str(error.value) == message
    result = cli("train", "--quiet", "--out", str(a_file))
    assert result.returncode == 2 and result.stderr == f"error: {cases[0][1]}\n", result.stderr


def test_a_read_only_output_folder_is_a_one_line_error(tmp_path, monkeypatch):
    """Read-only for root too: a read-only mount (a chmod does not stop root)."""
    read_only = tmp_path / "ro"
    _mount_tmpfs(read_only, "ro,size=1m")
    try:
        with pytest.raises(PathArgumentError) as error:
            fit(TrainConfig(**TINY, out=str(read_only / "run")))
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=False)
    assert str(error.value) == (f"--out {read_only / 'run'}: cannot write there (Read-only file system); "
                                "give a folder you can write to")  # fmt: skip


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def recording(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", recording)
    atomic.write_json(tmp_path / "a.json", {"x": 1})
    assert synced == [False, True]  # the file's data, then the folder's entry


def test_sigterm_ends_the_run_after_the_epoch_with_a_checkpoint(tmp_path, tmp_path_factory):
    """Through the CLI, as SLURM would stop it (one thread, as tests.helpers.cli runs the reference)."""
    out = tmp_path / "run"
    args = KILLED_RUN_ARGS
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
    full = uninterrupted_cli_run(tmp_path_factory)
    assert without_timings(read_json(out / "metrics.json")) == without_timings(full)


def test_a_second_sigterm_stops_at_once_and_says_how_to_resume(tmp_path):
    """The second SIGTERM is sent once the first is acknowledged, inside an epoch of ~300 steps (seconds long):
    it must not wait for the epoch's end."""
    out = tmp_path / "run"
    args = [*KILLED_RUN_ARGS[:-1], "--batch-size", "4", "--out", str(out)]  # the later --batch-size wins
    process = subprocess.Popen([sys.executable, "-m", "ccloss", *args], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    wait_for_epochs(out, 1, process)
    process.send_signal(signal.SIGTERM)
    acknowledged = process.stderr.readline()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert acknowledged == ACKNOWLEDGED + "\n"
    assert process.returncode == 143, stderr
    assert stderr == (f"stopped at once by a second SIGTERM; the last checkpoint in {out} is whole: rerun with "
                      "--resume (resume=True) to continue from it\n")  # fmt: skip
    assert not list(out.glob(".*.tmp")) and torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 0
    assert len(read_json(out / "metrics.json")["history"]) == 1  # the second epoch was cut short
