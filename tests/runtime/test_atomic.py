"""ccloss.runtime.atomic: a failed write keeps the old file and leaves no temporary."""

import pytest

from ccloss.runtime.atomic import atomic_write, read_json, write_json


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"a": 1})

    def explode(handle):
        handle.write('{"half": ')
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, explode)
    assert read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
