"""Shared by every test module: the counts of the property-based tests (tests/test_properties.py),
printed at the end of the run, also under pytest-xdist (each worker sends its counts back)."""

from __future__ import annotations

import os
from collections import Counter

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each, kernels included
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

PROPERTY_INPUTS: Counter = Counter()


def count_input(what: str) -> None:
    """One more input tried by a property test of ``what``."""
    PROPERTY_INPUTS[what] += 1


def pytest_sessionfinish(session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the counts to the controller
        workeroutput["property_inputs"] = dict(PROPERTY_INPUTS)


def pytest_testnodedown(node, error) -> None:
    PROPERTY_INPUTS.update(getattr(node, "workeroutput", {}).get("property_inputs", {}))


def pytest_terminal_summary(terminalreporter) -> None:
    counts = {k: v for k, v in PROPERTY_INPUTS.items() if k != "self-check"}
    if not counts:
        return
    terminalreporter.write_sep("-", f"property tests: {sum(counts.values())} inputs tried")
    for what, n in sorted(counts.items()):
        terminalreporter.write_line(f"  {n:6d}  {what}")
