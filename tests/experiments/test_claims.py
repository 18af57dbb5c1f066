"""Per-point claims (ccloss.experiments.claims): one holder at a time, dead holders replaced."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from ccloss.experiments import claims
from ccloss.experiments.claims import CLAIM_FILE, Heartbeat, holder, try_claim


def test_a_live_claim_is_not_taken_and_a_released_one_is(tmp_path):
    first = try_claim(tmp_path / "p")
    assert first is not None and holder(first.path)["pid"] == os.getpid()
    assert try_claim(tmp_path / "p") is None  # this process is alive: its claim holds
    first.release()
    assert not (tmp_path / "p" / CLAIM_FILE).exists()
    assert try_claim(tmp_path / "p") is not None


def test_a_dead_process_on_this_host_loses_its_claim(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = tmp_path / "p" / CLAIM_FILE
    path.parent.mkdir()
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "token": "x", "heartbeat": 0}))
    taken = try_claim(tmp_path / "p")
    assert taken is not None and holder(path)["token"] == taken.token


def test_another_hosts_claim_is_taken_only_when_its_heartbeat_is_stale(tmp_path, monkeypatch):
    path = tmp_path / "p" / CLAIM_FILE
    path.parent.mkdir()
    record = {"host": "elsewhere.cluster", "pid": 1, "token": "theirs", "heartbeat": time.time()}
    path.write_text(json.dumps(record))
    assert try_claim(tmp_path / "p") is None  # fresh heartbeat: their job is running
    monkeypatch.setenv("CCLOSS_CLAIM_STALE_S", "60")
    path.write_text(json.dumps({**record, "heartbeat": time.time() - 61}))
    assert try_claim(tmp_path / "p") is not None


def test_an_empty_claim_is_taken_after_its_grace_period(tmp_path, monkeypatch):
    path = tmp_path / "p" / CLAIM_FILE
    path.parent.mkdir()
    path.write_text("")  # its writer died between creating and writing it
    assert try_claim(tmp_path / "p") is None
    old = time.time() - claims.EMPTY_GRACE_S - 1
    os.utime(path, (old, old))
    assert try_claim(tmp_path / "p") is not None


def test_of_two_takers_of_a_stale_claim_one_keeps_it(tmp_path):
    """Both see the dead holder, both rename their own claim in: the one whose token survives runs."""
    path = tmp_path / "p" / CLAIM_FILE
    path.parent.mkdir()
    stale = {"host": "gone", "pid": 1, "token": "old", "heartbeat": 0}
    code = (
        "import sys, time; from pathlib import Path; from ccloss.experiments.claims import try_claim\n"
        "time.sleep(max(0, float(sys.argv[2]) - time.time())); c = try_claim(Path(sys.argv[1]))\n"
        "print('won' if c else 'lost')"
    )
    for _ in range(5):
        path.write_text(json.dumps(stale))
        start = str(time.time() + 1.0)
        procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "p"), start], stdout=subprocess.PIPE,
                                  text=True) for _ in range(2)]  # fmt: skip
        results = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
        assert results == ["lost", "won"], results  # one holder, never two, never none
        assert holder(path)["token"] != "old" and not (path.parent / ".claim.takeover").exists()


def test_heartbeat_refreshes_and_releases(tmp_path):
    claim = try_claim(tmp_path / "p")
    first = holder(claim.path)["heartbeat"]
    with Heartbeat(interval=0.05) as beat:
        beat.hold("p", claim)
        time.sleep(0.3)
        assert holder(claim.path)["heartbeat"] > first
    assert not claim.path.exists()  # leaving the heartbeat releases what it still holds
