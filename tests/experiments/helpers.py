"""Builders shared by the experiment tests: a finished (or unfinished) run directory made by hand."""

import json


def fake_run(path, loss, seed, acc, ratio, status="complete", cam=True, collapsed=None):
    path.mkdir(parents=True)
    config = {
        "dataset": "cifar100",
        "backbone": "resnet18",
        "width_mult": 1.0,
        "cam": cam,
        "loss": loss,
        "lam": None,
        "form": None,
        "group_size": None,
        "batch_size": 32,
        "epochs": 2,
        "seed": seed,
        "loss_params": {},
    }
    (path / "config.json").write_text(json.dumps(config))
    final = {"test_acc": acc, "best_test_acc": acc, "test_intra_inter": ratio} if status == "complete" else None
    if final is not None and collapsed is not None:
        final["test_attention_collapsed"] = collapsed
    (path / "metrics.json").write_text(json.dumps({"status": status, "history": [], "final": final}))
    return path
