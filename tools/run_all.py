"""What ``make run`` does: execute the numbered notebooks in order (papermill), then print notebook 02's table.

``python -m tools.run_all [NOTEBOOK ...]`` from the repository root; the executed copies go to
``runs/notebooks/``, the figures to ``figures/``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from experiments.notebooks import NOTEBOOK_DIR, REPO_ROOT, NotebookFailed, execute_notebook

__all__ = ["run_all"]


def run_all(notebooks: Sequence[str] | None = None) -> int:
    """What ``make run`` does: execute the numbered notebooks in order, then print the table."""
    paths = [Path(p) for p in notebooks] if notebooks else sorted(NOTEBOOK_DIR.glob("0*.ipynb"))
    if not paths:
        print(f"no notebooks found in {NOTEBOOK_DIR}", file=sys.stderr)
        return 1
    out_dir = REPO_ROOT / "runs" / "notebooks"
    for path in paths:
        started = time.perf_counter()
        print(f"== {path.name}", flush=True)
        try:
            execute_notebook(path, out_dir / path.name)
        except NotebookFailed as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"   done in {time.perf_counter() - started:.0f}s -> {out_dir / path.name}", flush=True)
    summary = REPO_ROOT / "runs" / "02_train" / "summary.md"
    if summary.exists():
        print("\nCE+CAM against CC-Loss, the default run of notebooks/02_train.ipynb:\n")
        print(summary.read_text())
    print(f"figures: {REPO_ROOT / 'figures'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_all(sys.argv[1:] or None))
