"""nbval runs the numbered notebooks; the exercise copies stop at unanswered cells by design, so they
are checked by tests/tools/test_exercises.py instead."""

collect_ignore_glob = ["exercises/*"]


def pytest_collection_modifyitems(items):
    """Under pytest-xdist (--dist loadgroup) every notebook cell runs in one worker, in order: 04 reads the
    runs that 02 trains."""
    import pytest

    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.xdist_group("notebooks"))
