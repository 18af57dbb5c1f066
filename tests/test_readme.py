"""The README stays a front page whose numbers come from committed files (issue 25): at most 800 words
before its documentation table, the take-home's repository numbers as tools/readme_numbers.py prints
them from results/, every notebook with its measured run time and Colab badge, and workshop agendas
whose slots add up."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tools import readme_numbers

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_FRONT_WORDS = 800
BADGE = "https://colab.research.google.com/github/ccloss/ccloss/blob/main/notebooks/{}"


def _section(text: str, heading: str) -> str:
    """The text of one ``## heading`` section, up to the next ``## ``."""
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row in ``text``, each table's header and separator rows left out."""
    lines = text.splitlines() + [""]
    rows = []
    for line, following in zip(lines, lines[1:]):
        if line.startswith("|") and not re.fullmatch(r"[|\s:-]+", line) and not re.fullmatch(r"[|\s:-]+", following):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _duration(path: Path) -> str:
    return readme_numbers.format_seconds(json.loads(path.read_text())["metadata"]["papermill"]["duration"])


def test_readme_front_page_is_at_most_800_words():
    front = README[: README.index("## Documentation")]
    words = len(front.split())  # what `wc -w` counts: markdown and link targets included
    assert words <= MAX_FRONT_WORDS, f"README has {words} words before its documentation table"


def test_readme_lists_every_notebook_with_its_measured_time_and_its_colab_badge():
    rows = {r[0]: r for r in _table_rows(_section(README, "Notebooks"))}
    for path in NOTEBOOKS:
        row = rows.get(f"[{path.stem}](notebooks/{path.name})")
        assert row is not None, f"README's notebook table has no row for {path.name}"
        assert row[2] == _duration(path), f"{path.name}: README says {row[2]}, its metadata {_duration(path)}"
        assert BADGE.format(path.name) + ")" in row[3], f"{path.name}: no Colab badge opening it"


@pytest.mark.parametrize("page", ["docs/cpu_timings.md", "docs/workshop.md"])
def test_other_pages_give_the_same_notebook_times(page):
    text = (ROOT / page).read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        number, name = path.stem.split("_", 1)
        rows = [r for r in _table_rows(text) if re.match(rf"^{number}[ _]({name}|{name.replace('_', ' ')})\b", r[0])]
        assert rows, f"{page} has no run time for {path.name}"
        assert rows[0][1] == _duration(path), f"{page}: {path.name} {rows[0][1]}, its metadata {_duration(path)}"


def test_take_home_numbers_of_this_repository_are_what_the_script_prints():
    printed = "\n".join(readme_numbers.small_table() + readme_numbers.table("mnist5k"))
    cited = re.findall(r"\d+\.\d+ ± \d+\.\d+", _section(README, "Take-home"))
    assert len(cited) >= 4
    for value in cited:
        assert value in printed, f"README's take-home cites {value}; python -m tools.readme_numbers does not print it"


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return 60 * int(hours) + int(minutes)


def _agendas() -> list[tuple[str, list[tuple[int, int]]]]:
    """(the agenda's heading line, its slots as (start, end) minutes), for each agenda of the workshop page."""
    text = _section((ROOT / "docs/workshop.md").read_text(encoding="utf-8"), "Agendas")
    agendas = []
    for block in re.split(r"\n(?=\*\*)", text)[1:]:
        slots = [tuple(map(_minutes, r[0].split("–"))) for r in _table_rows(block) if "–" in r[0]]
        agendas.append((block.splitlines()[0], slots))
    return agendas


def test_workshop_agendas_add_up():
    agendas = _agendas()
    assert len(agendas) == 2
    for heading, slots in agendas:
        assert slots[0][0] == 0, heading
        for (_, end), (start, _) in zip(slots, slots[1:]):
            assert end == start, f"{heading}: a slot ends at {end} min, the next starts at {start}"
        total = slots[-1][1]
        stated = re.search(r"(\d+) minutes|(\d+) h\b", heading)
        minutes = int(stated.group(1)) if stated.group(1) else 60 * int(stated.group(2))
        assert total == minutes, f"{heading}: the slots add up to {total} min"


def test_agenda_checker_sees_a_gap(monkeypatch, tmp_path):
    page = tmp_path / "docs" / "workshop.md"
    page.parent.mkdir()
    table = "| time | what |\n| --- | --- |\n"
    page.write_text(
        f"## Agendas\n\n**1 h** x\n\n{table}| 0:00–0:20 | a |\n| 0:30–1:00 | b |\n\n"
        f"**90 minutes** y\n\n{table}| 0:00–1:30 | c |\n"
    )
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="ends at 20 min, the next starts at 30"):
        test_workshop_agendas_add_up()


def test_mean_std_is_the_sample_std():
    # mean 2, squared deviations 1 + 0 + 1 = 2, over n - 1 = 2: std 1
    assert readme_numbers.mean_std([1.0, 2.0, 3.0], 2) == "2.00 ± 1.00"
    assert readme_numbers.mean_std([98.5], 1) == "98.5 (n = 1)"
    assert readme_numbers.mean_std([], 1) == "not measured"


def test_format_seconds():
    assert readme_numbers.format_seconds(4.49) == "4 s"
    assert readme_numbers.format_seconds(59.6) == "1 min 0 s"
    assert readme_numbers.format_seconds(161.1) == "2 min 41 s"
    assert readme_numbers.format_seconds(None) == "not measured"


def _write_run(folder: Path, label: str, seed: int, final: dict, status: str = "complete", dataset="mnist5k") -> None:
    run = folder / f"label={label},dataset={dataset},seed={seed}"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"status": status, "final": final}))


def test_stage_c_table_reads_the_complete_runs_of_one_dataset(monkeypatch, tmp_path):
    stage_c = tmp_path / readme_numbers.STAGE_C
    for seed, (acc, map_r) in enumerate([(98.0, 90.0), (99.0, 92.0), (97.0, 94.0), (98.0, 96.0), (98.0, 98.0)]):
        _write_run(stage_c, "ce_cam", seed, {"test_acc": acc, "test_map_at_r": map_r, "test_unseparated_pairs": seed})
        _write_run(stage_c, "pair_ratio", seed, {"test_acc": acc + 0.5, "test_unseparated_pairs": 0})
        _write_run(stage_c, "ce_cam", seed, {"test_acc": 10.0}, dataset="digits")  # another dataset: left out
    _write_run(stage_c, "default", 0, {"test_acc": 50.0, "test_map_at_r": 60.0})
    _write_run(stage_c, "default", 1, {"test_acc": 52.0})
    _write_run(stage_c, "default", 2, {"test_acc": 54.0, "test_map_at_r": 70.0})
    _write_run(stage_c, "ce_cam", 9, {"test_acc": 0.0}, status="running")  # an incomplete run is left out
    monkeypatch.setattr(readme_numbers, "RESULTS", tmp_path)
    ce, ratio, pair = ([c.strip() for c in line.strip("|").split("|")] for line in readme_numbers.table("mnist5k")[2:])
    # CE+CAM: accuracies 98, 99, 97, 98, 98: mean 98, squared deviations 0 + 1 + 1 + 0 + 0 = 2, / 4: std 0.707
    assert ce[:3] == ["CE+CAM", "5", "98.00 ± 0.71"]
    assert ce[5] == "94.0 ± 3.2"  # MAP@R 90..98 step 2: std sqrt(40 / 4) = 3.16
    assert ce[6] == "2.0 ± 1.6"  # unseparated 0..4: std sqrt(10 / 4) = 1.58
    assert ratio[1:3] == ["3", "52.00 ± 2.00"] and ratio[5] == "65.0 ± 7.1 (n = 2)"  # MAP@R in 2 of the 3 runs
    assert pair[2] == "98.50 ± 0.71" and pair[3] == "not measured" and pair[6] == "0.0 ± 0.0"


def test_small_table_keeps_the_rows_of_the_cam_sweep_apart(monkeypatch, tmp_path):
    """The class-pair form's prefix (``loss=cc,cam=true,seed=``) must not take the ratio's points, and a
    point still running is left out."""
    sweep = tmp_path / readme_numbers.SMALL_SWEEP

    def point(name: str, final: dict, status: str = "complete") -> None:
        (sweep / name).mkdir(parents=True)
        (sweep / name / "metrics.json").write_text(json.dumps({"status": status, "final": final}))

    for seed, acc in enumerate([97.0, 98.0, 99.0]):
        point(f"loss=ce,cam=true,seed={seed}", {"test_acc": acc, "test_map_at_r": 60.0 + 10 * seed})
        point(f"loss=cc,cam=true,form=ratio,seed={seed}", {"test_acc": 90.0, "test_unseparated_pairs": seed})
        point(f"loss=cc,cam=true,seed={seed}", {"test_acc": acc + 1, "test_unseparated_pairs": 0})
    point("loss=cc,cam=true,seed=3", {"test_acc": 0.0}, status="running")
    monkeypatch.setattr(readme_numbers, "RESULTS", tmp_path)
    ce, ratio, pair = ([c.strip() for c in line.strip("|").split("|")] for line in readme_numbers.small_table()[2:])
    assert ce[:3] == ["CE+CAM", "3", "98.00 ± 1.00"] and ce[5] == "70.0 ± 10.0"  # MAP@R 60, 70, 80
    assert ratio[1:3] == ["3", "90.00 ± 0.00"] and ratio[6] == "1.0 ± 1.0"  # unseparated 0, 1, 2
    assert pair[1:3] == ["3", "99.00 ± 1.00"] and pair[4] == "not measured" and pair[6] == "0.0 ± 0.0"
