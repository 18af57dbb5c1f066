"""tools.study_tables: the study page's generated blocks are what results/ gives, and a missing marker is named."""

from __future__ import annotations

import pytest

from tools import study_tables


def test_the_committed_page_matches_the_results(capsys):
    assert study_tables.main(["--check"]) == 0, "run python -m tools.study_tables and commit the page"
    assert "matches" in capsys.readouterr().out


def test_a_block_is_rewritten_between_its_markers_only():
    page = study_tables.PAGE.read_text()
    start, end = "<!-- study_tables:stage3 -->\n", "<!-- /study_tables:stage3 -->"
    stale = page.replace(page[page.index(start) + len(start) : page.index(end)], "\nan old table\n")
    assert "an old table" in stale
    assert study_tables.render(stale) == page


def test_a_missing_marker_is_named():
    page = study_tables.PAGE.read_text().replace("<!-- study_tables:part3 -->", "")
    with pytest.raises(ValueError, match="'part3'"):
        study_tables.render(page)
