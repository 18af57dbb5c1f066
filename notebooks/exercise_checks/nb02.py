"""Checks of notebook 02 (training): the loss of the same batch after one optimiser step, and the accuracy
difference between two rows of the comparison, from the table of runs (one row per run)."""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F

from . import Case, close, not_done, passed

__all__ = ["CASES", "check_loss_after_step", "check_accuracy_gap"]


def _objective(model, x, y, lam: float, cc_loss) -> float:
    """CE + lam * CC of ``model`` on the batch, in training mode (batch-norm on the batch's statistics)."""
    model.train()
    with torch.no_grad():
        output = model(x)
        return float(F.cross_entropy(output.logits, y) + lam * cc_loss(output.attention, y))


def check_loss_after_step(answer, model, x, y, lam: float, cc_loss, loss_before: float) -> None:
    """Your turn 1: the objective CE + lam * CC of the batch (x, y) under the model's weights after the step."""
    not_done("Your turn 1", answer)
    answer = float(answer)
    if close(answer, loss_before, rtol=1e-6):
        raise AssertionError("✗ Your turn 1: not yet. That is the loss before the step: the weights have moved "
                             "since, so run the model on the batch again.")  # fmt: skip
    passed("Your turn 1", close(answer, _objective(model, x, y, lam, cc_loss), rtol=1e-5),
           "a new forward pass of the same batch in training mode, then both parts of the objective, the CC "
           "term weighted as in the step.")  # fmt: skip


def _accuracy(runs: pd.DataFrame, row: str, split: str) -> float:
    return float(runs.loc[runs["row"] == row, f"{split}_acc"].mean())


def check_accuracy_gap(answer, runs: pd.DataFrame, split: str = "test") -> None:
    """Your turn 2: mean accuracy of the class-pair rows (``row == "cc"``) minus that of CE+CAM, in points."""
    not_done("Your turn 2", answer)
    want = _accuracy(runs, "cc", split) - _accuracy(runs, "ce+CAM", split)
    passed("Your turn 2", close(float(answer), want, rtol=0, atol=1e-6),
           "the mean over the seeds of each row, the class-pair form first, in percentage points.")  # fmt: skip


def _step_inputs() -> tuple:
    from ccloss import CCLoss, build_model

    torch.manual_seed(0)
    model = build_model("resnet18", 4, in_channels=1, width_mult=0.125, cam=True)
    x, y = torch.randn(16, 1, 32, 32), torch.arange(16) % 4
    cc_loss, lam = CCLoss(), 0.1
    loss_before = _objective(model, x, y, lam, cc_loss)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    output = model(x)
    (F.cross_entropy(output.logits, y) + lam * cc_loss(output.attention, y)).backward()
    optimizer.step()
    return model, x, y, lam, cc_loss, loss_before


def _ce_after(model, x, y, *_) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model.train()(x).logits, y))


def _runs() -> tuple:
    acc = {"ce+CAM": (98.1, 98.4, 97.6), "cc (ratio)": (97.7, 98.6, 97.5), "cc": (98.0, 97.9, 98.3)}
    frame = pd.DataFrame([{"row": r, "seed": s, "test_acc": a} for r, accs in acc.items() for s, a in enumerate(accs)])
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True), "test"


CASES = {
    "loss_after_step": Case(
        check_loss_after_step,
        _step_inputs,
        right=lambda model, x, y, lam, cc_loss, before: _objective(model, x, y, lam, cc_loss),
        wrong={
            "the loss before the step, copied from scope": lambda *inputs: inputs[-1],
            "the cross-entropy alone (lambda forgotten)": _ce_after,
            "lambda = 1 instead of the run's": lambda model, x, y, lam, cc_loss, _: _objective(
                model, x, y, 1.0, cc_loss
            ),
        },
    ),
    "accuracy_gap": Case(
        check_accuracy_gap,
        _runs,
        right=lambda runs, split: _accuracy(runs, "cc", split) - _accuracy(runs, "ce+CAM", split),
        wrong={
            "reversed (CE+CAM minus the class-pair form)": lambda runs, s: (
                _accuracy(runs, "ce+CAM", s) - _accuracy(runs, "cc", s)
            ),
            "the paper's ratio row instead of the class-pair form": lambda runs, s: (
                _accuracy(runs, "cc (ratio)", s) - _accuracy(runs, "ce+CAM", s)
            ),
            "the first run of each row only": lambda runs, s: float(
                runs[runs["row"] == "cc"].iloc[0][f"{s}_acc"] - runs[runs["row"] == "ce+CAM"].iloc[0][f"{s}_acc"]
            ),
        },
    ),
}
