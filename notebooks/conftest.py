"""nbval runs the numbered notebooks; the exercise copies stop at unanswered cells by design, so they
are checked by tests/tools/test_exercises.py instead."""

collect_ignore_glob = ["exercises/*"]


#: Notebooks that read the runs another one trains run after it, in the same worker.
READS_RUNS_OF = {"05_embeddings.ipynb": "02_train.ipynb"}


def notebook_scope(nodeid: str) -> str:
    """The work unit of a test under pytest-xdist: every cell of a notebook in one (a notebook's cells share
    a kernel), with the notebook whose runs it reads (05 reads the runs 02 trains); any other test on its
    own. Independent notebooks may run in different workers at the same time."""
    if ".ipynb::" not in nodeid:
        return nodeid
    name = nodeid.split(".ipynb::")[0].rsplit("/", 1)[-1] + ".ipynb"
    return "notebook:" + READS_RUNS_OF.get(name, name)


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
