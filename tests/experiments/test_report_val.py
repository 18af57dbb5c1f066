"""`python -m experiments report` on a sweep evaluated on the validation split (the study's): val in the titles,
no paper column (the paper reports test accuracy); it crashed with a KeyError before."""

import json

from experiments.report import write_report


def test_a_val_sweep_is_reported_as_val(tmp_path):
    folder = tmp_path / "study"
    expanded = []
    for seed, acc in enumerate((97.0, 98.0)):
        name = f"label=a,seed={seed}"
        expanded.append({"name": name, "values": {"label": "a", "seed": seed}, "parameters": {}})
        (folder / name).mkdir(parents=True)
        final = {"val_acc": acc, "best_val_acc": acc, "val_intra_inter": 0.1, "val_knn_acc": 90.0 + seed}
        (folder / name / "metrics.json").write_text(json.dumps({"status": "complete", "history": [], "final": final}))
        (folder / name / "config.json").write_text(json.dumps({"dataset": "digits", "loss": "cc", "seed": seed}))
    spec = {"name": "study", "expanded": expanded, "varied": ["label"], "paper": {"table": "cam", "match": {}}}
    (folder / "sweep.json").write_text(json.dumps(spec))
    markdown = write_report(folder)["markdown"]
    assert "Top-1 val accuracy" in markdown and "| ours: val acc (%) |" in markdown
    assert "| a | 2 | 97.50 ± 0.71 |" in markdown and "90.5 ± 0.7" in markdown
    assert "paper" not in markdown.split("| label")[1]  # no paper column for val numbers
