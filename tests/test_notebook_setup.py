"""The notebooks' first cell works in the repository, on Colab and elsewhere; badges and install cells
use the one repository URL of pyproject.toml."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REPO_URL = re.search(r'^Repository = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def setup_cell(path: Path) -> str:
    return next(c.source for c in _read(path).cells if c.cell_type == "code")


def test_every_notebook_starts_with_the_same_setup_cell():
    assert len(NOTEBOOKS) >= 7, [p.name for p in NOTEBOOKS]
    reference = setup_cell(NOTEBOOKS[0])
    assert "COLAB_RELEASE_TAG" in reference and "CCLOSS_REPO_URL" in reference
    for path in NOTEBOOKS[1:]:
        assert setup_cell(path) == reference, f"{path.name}: the first code cell differs from {NOTEBOOKS[0].name}'s"


def test_install_cell_and_badges_use_the_repository_url():
    assert re.search(r'"CCLOSS_REPO_URL", "([^"]+)"', setup_cell(NOTEBOOKS[0])).group(1) == REPO_URL
    owner_repo = REPO_URL.removeprefix("https://github.com/")
    for path in NOTEBOOKS:
        first = _read(path).cells[0].source
        badge = f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{path.name}"
        assert badge in first, f"{path.name}: no Colab badge for {badge}"
        assert "github.com/" not in first.replace(badge, "").replace("colab-badge.svg", ""), path.name


def test_no_notebook_cites_a_missing_file():
    for path in NOTEBOOKS:
        text = "\n".join(c.source for c in _read(path).cells)
        for target in re.findall(r"\]\((\.\./[^)#\s]+)", text):  # relative links of the markdown
            assert (path.parent / target).exists(), f"{path.name} links to {target}, which does not exist"
        assert "METHOD.md" not in text, f"{path.name} cites METHOD.md, which is not in the repository"


def test_elsewhere_the_cell_says_what_to_do(tmp_path):
    """No ccloss, no Colab: a clear error with the two commands (python -S: no site-packages)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLAB_RELEASE_TAG", "PYTHONPATH")}
    result = subprocess.run([sys.executable, "-S", "-c", setup_cell(NOTEBOOKS[0])], cwd=tmp_path, env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode != 0
    assert "ModuleNotFoundError: ccloss is not installed" in result.stderr and "make run" in result.stderr
    assert REPO_URL in result.stderr


@pytest.mark.slow
def test_simulated_colab_run_of_04(tmp_path, monkeypatch):
    """COLAB_RELEASE_TAG set, the repository URL a file:// URL of this checkout's last commit, and
    the notebook run from a folder outside any checkout: the first cell clones the repository,
    puts it first on the path and moves into its notebooks/ folder; 04 then runs start to end, reads
    the clone's results/ and writes its figures into the clone. (Every notebook shares that first cell:
    tests/test_notebook_setup.py::test_every_notebook_starts_with_the_same_setup_cell.)"""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")  # pragma: no cover
    import papermill as pm

    clone, work = tmp_path / "content" / "ccloss", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("COLAB_RELEASE_TAG", "test")
    monkeypatch.setenv("CCLOSS_REPO_URL", ROOT.as_uri())
    monkeypatch.setenv("CCLOSS_HOME", str(clone))
    name = "04_ablations.ipynb"
    shutil.copy(ROOT / "notebooks" / name, work / name)
    pm.execute_notebook(str(work / name), str(work / f"out_{name}"), kernel_name="python3", cwd=str(work),
                        progress_bar=False)  # fmt: skip
    assert (clone / "pyproject.toml").exists() and (clone / ".git").exists()
    assert (clone / "figures" / "04_lambda.png").exists(), "04 wrote its figures outside the clone"
    outputs = "".join(str(o) for c in _read(work / f"out_{name}").cells for o in c.get("outputs", []))
    assert f"from {clone / 'results' / 'small_lambda'}" in outputs  # read from the clone


def test_colab_installs_the_notebooks_extra():
    """The notebooks need papermill and ipykernel, which the plain package no longer pulls (issue 20)."""
    assert '"-e", f"{repo}[notebooks]"' in setup_cell(NOTEBOOKS[0])
