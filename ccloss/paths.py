"""Where the repository is (the notebooks read results, sweeps and figures from it): :func:`repo_root`."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PACKAGE_PARENT", "repo_root", "repo_url"]

PACKAGE_PARENT = Path(__file__).resolve().parents[1]


def repo_url() -> str:
    """``$CCLOSS_REPO_URL`` (forks, mirrors, tests), else the installed package's ``Repository`` URL."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("ccloss").get_all("Project-URL") or []
    except PackageNotFoundError:  # run from a checkout without install
        urls = []
    found = next((u.split(",", 1)[1].strip() for u in urls if u.lower().startswith("repository")), "")
    return os.environ.get("CCLOSS_REPO_URL") or found


def repo_root(start: Path | None = None) -> Path:
    """The checkout holding this package, else the first above ``start`` (default: the working folder)."""
    here = (start or Path.cwd()).resolve()
    for folder in (PACKAGE_PARENT, here, *here.parents):
        if (folder / "ccloss" / "__init__.py").is_file() and (folder / "notebooks").is_dir():
            return folder
    raise FileNotFoundError(
        f"ccloss is installed from {PACKAGE_PARENT}, which is not a checkout of the repository, and no checkout "
        f"holds {here}. The notebooks need the repository (results/, sweeps/, figures/): clone it "
        f"(git clone {repo_url()}) and run `make run` in it, or open the notebooks from there."
    )
