"""Where the repository's folders are: notebooks, results, sweeps, figures, data.

The notebooks and the experiment machinery read committed results and sweep files from the
repository, never from ``../``: :func:`repo_root` finds it from the package (an editable install,
as ``make`` and the notebooks' Colab cell make) or, failing that, from the working directory.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PACKAGE_PARENT", "repo_root", "is_repo", "repo_url"]

PACKAGE_PARENT = Path(__file__).resolve().parents[1]


def is_repo(folder: Path) -> bool:
    """A checkout of this repository: the package, the notebooks and the sweep files side by side."""
    return (
        (folder / "ccloss" / "__init__.py").is_file()
        and (folder / "notebooks").is_dir()
        and (folder / "sweeps").is_dir()
    )


def repo_url() -> str:
    """The repository's address: ``$CCLOSS_REPO_URL`` (forks, mirrors, tests), else ``[project.urls]
    Repository`` of the installed package's metadata (pyproject.toml)."""
    import os
    from importlib.metadata import PackageNotFoundError, metadata

    if os.environ.get("CCLOSS_REPO_URL"):
        return os.environ["CCLOSS_REPO_URL"]
    try:
        urls = metadata("ccloss").get_all("Project-URL") or []
    except PackageNotFoundError:  # pragma: no cover - the package runs from a checkout without install
        urls = []
    return next((u.split(",", 1)[1].strip() for u in urls if u.lower().startswith("repository")), "")


def repo_root(start: Path | None = None) -> Path:
    """The repository holding this package, else the first repository above ``start`` (default: the
    working directory). Raises FileNotFoundError saying how to get one."""
    if is_repo(PACKAGE_PARENT):
        return PACKAGE_PARENT
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if is_repo(folder):
            return folder
    raise FileNotFoundError(
        f"ccloss is installed from {PACKAGE_PARENT}, which is not a checkout of the repository, and no checkout "
        f"holds {here}. The notebooks need the repository (results/, sweeps/, figures/): clone it "
        f"(git clone {repo_url()}) and run `make run` in it, or open the notebooks from there."
    )
