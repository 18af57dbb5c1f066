"""nbval runs the numbered notebooks; the exercise copies stop at unanswered cells by design, so they
are checked by tests/tools/test_exercises.py instead."""

collect_ignore_glob = ["exercises/*"]


def notebook_scope(nodeid: str) -> str:
    """The work unit of a test under pytest-xdist: every notebook cell in one ("notebooks"), so that they
    run in one worker and in order (each notebook's cells share a kernel; 04 reads the runs 02 trains);
    any other test on its own."""
    return "notebooks" if ".ipynb::" in nodeid else nodeid


def pytest_xdist_make_scheduler(config, log):
    """Under `pytest -n N`: load balancing with the notebooks kept together. (xdist's own `xdist_group`
    marks no longer reach its scheduler with pytest >= 9.2, so the grouping is done here.)"""
    if config.getvalue("dist") == "each":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class NotebooksTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return notebook_scope(nodeid)

    return NotebooksTogether(config, log)
