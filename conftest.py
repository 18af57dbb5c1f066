"""Every pytest run from this repository (`make test`, or `pytest tests`, or `pytest notebooks`) leaves figures/
as it found it: the notebooks, run by nbval and by the tests, write their figures there, and a figure redrawn
on another machine or thread count differs in its last bytes from the committed one."""

from pathlib import Path

import pytest

FIGURES_BEFORE = pytest.StashKey[dict]()
FIGURES = Path(__file__).resolve().parent / "figures"


def snapshot(folder: Path) -> dict[Path, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def restore(folder: Path, before: dict[Path, bytes]) -> None:
    """``folder`` back to ``before``: files added since are removed, changed or removed ones rewritten."""
    for path in [p for p in folder.rglob("*") if p.is_file() and p not in before]:
        path.unlink()
    for path, data in before.items():
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def pytest_sessionstart(session) -> None:
    """Remember figures/ (in the controller, not in xdist's workers)."""
    if not hasattr(session.config, "workerinput"):
        session.config.stash[FIGURES_BEFORE] = snapshot(FIGURES)


def pytest_sessionfinish(session) -> None:
    """Put figures/ back as the session found it, so that `make test` leaves the working tree unchanged."""
    before = session.config.stash.get(FIGURES_BEFORE, None)
    if before is not None:
        restore(FIGURES, before)
