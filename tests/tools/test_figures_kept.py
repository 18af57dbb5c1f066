"""`make test` leaves figures/ as it found it: the repository's conftest.py snapshots the folder before the session
and restores it after, since the notebooks, run by nbval and by the tests, redraw the committed figures in place."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def root_conftest():
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_restore_undoes_changed_added_and_removed_files(tmp_path):
    conftest = root_conftest()
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.png").write_bytes(b"\x89PNG committed")
    (tmp_path / "sub" / "b.svg").write_text("<svg/>")
    before = conftest.snapshot(tmp_path)
    (tmp_path / "a.png").write_bytes(b"\x89PNG redrawn")
    (tmp_path / "sub" / "b.svg").unlink()
    (tmp_path / "new.gif").write_bytes(b"GIF89a")
    conftest.restore(tmp_path, before)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "a.png",
        "sub/b.svg",
    ]
    assert (tmp_path / "a.png").read_bytes() == b"\x89PNG committed"
    assert (tmp_path / "sub" / "b.svg").read_text() == "<svg/>"


def test_the_snapshot_is_of_the_repository_figures():
    conftest = root_conftest()
    assert conftest.FIGURES == ROOT / "figures"
    assert (ROOT / "figures" / "01_distance_matrix.png") in conftest.snapshot(conftest.FIGURES)
