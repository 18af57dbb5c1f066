"""Execute notebooks with papermill: the one place that knows how (kernel, cwd, retries).

Used by the sweeps, by ``make run`` (``python -m tools.run_all``) and by the tests. Papermill
pitfalls handled here: the kernel is always ``python3``; the working directory is the notebook's
folder so relative paths such as ``../data`` work; a kernel that fails to start is retried once.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["REPO_ROOT", "NOTEBOOK_DIR", "NotebookFailed", "execute_notebook", "local_kernel_manager", "notebook_error"]

REPO_ROOT = Path(__file__).resolve().parents[1]  #: the repository that holds experiments/ beside ccloss/
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
#: nbclient's errors for a kernel that never got going (retried); a kernel that dies while running is not
STARTUP_FAILURES = ("didn't respond", "before replying to kernel_info")


class NotebookFailed(RuntimeError):
    """A notebook raised; the message holds the failing cell's error (read from the output)."""


@functools.cache
def local_kernel_manager():
    """jupyter_client's AsyncKernelManager, over IPC on POSIX (Unix sockets under the temporary folder, one
    prefix per kernel): no TCP port open on the machine and no "running over TCP without encryption" warning
    from the kernel. Elsewhere AsyncKernelManager itself (TCP)."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    if os.name != "posix":
        return AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc"

        @default("ip")
        def _default_ip(self) -> str:  # the sockets' path prefix: one per kernel, not "kernel-ipc" in the cwd
            return os.path.join(tempfile.gettempdir(), f"ccloss-kernel-{uuid.uuid4().hex[:12]}")

    return LocalKernelManager


def notebook_error(output_path: str | os.PathLike) -> str | None:
    """The first error recorded in an executed notebook (papermill writes it even on failure)."""
    import nbformat

    try:
        nb = nbformat.read(str(output_path), as_version=4)
    except Exception:  # missing or unreadable
        return None
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"{output.get('ename')}: {output.get('evalue')}"
    return None


def execute_notebook(
    notebook: str | os.PathLike,
    output: str | os.PathLike,
    parameters: dict[str, Any] | None = None,
    *,
    cwd: str | os.PathLike | None = None,
    kernel: str = "python3",
    retries: int = 1,
    log_output: bool = False,
    **engine_options: Any,
) -> Path:
    """Run ``notebook`` with papermill into ``output``; raise :class:`NotebookFailed` on error.
    ``engine_options`` go to papermill's engine (nbclient); ``kernel_manager_class`` defaults to
    :func:`local_kernel_manager`'s."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    notebook, output = Path(notebook), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    cwd = Path(cwd) if cwd is not None else notebook.resolve().parent
    engine_options.setdefault("kernel_manager_class", local_kernel_manager())
    for attempt in range(retries + 1):
        try:
            pm.execute_notebook(
                str(notebook),
                str(output),
                parameters=parameters or {},
                kernel_name=kernel,
                cwd=str(cwd),
                progress_bar=False,
                log_output=log_output,
                **engine_options,
            )
            return output
        except PapermillExecutionError as error:
            raise NotebookFailed(f"{notebook.name} failed: {error.ename}: {error.evalue} (see {output})") from None
        except RuntimeError as error:  # e.g. "Kernel didn't respond in 60 seconds"
            if attempt == retries or not any(text in str(error) for text in STARTUP_FAILURES):
                raise NotebookFailed(f"{notebook.name} could not run: {error}") from None
            time.sleep(2)
    raise AssertionError("unreachable")
