"""The state of one training run between epochs: restore it from a checkpoint, save it, log it.

:func:`ccloss.train.fit` holds a :class:`RunState`; everything here is bookkeeping around the
training loop (checkpoints, metrics.json, the NaN check, the per-epoch log line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..metrics import final_record
from . import checkpoint as ckpt
from . import distributed as dist_utils

__all__ = [
    "RunState",
    "NonFiniteLossError",
    "restore",
    "save",
    "check_finite",
    "finish_from_checkpoint",
    "epoch_line",
    "say",
]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class RunState:
    """What the epochs of one run share, and the state they carry from one epoch to the next."""

    config: Any  #: the TrainConfig
    out: Path
    device: torch.device
    world_size: int
    rank: int
    model: nn.Module  #: the bare model (what is saved)
    train_model: nn.Module  #: the model as trained: DDP- and compile-wrapped where asked
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loader: Any  #: a TensorLoader, or any iterable of (x, y)
    eval_loader: Any
    reference_loader: Any = None  #: the training set without augmentation, when given (see runtime.setup)
    history: list = field(default_factory=list)
    step: int = 0
    start_epoch: int = 0
    best: dict = field(default_factory=lambda: {"acc": -1.0, "epoch": -1})

    @property
    def split(self) -> str:
        return self.config.eval_split

    @property
    def amp(self) -> bool:
        return self.config.amp and self.device.type == "cuda"


def finish_from_checkpoint(out: Path, checkpoint: dict) -> None:
    split = checkpoint["config"].get("eval_split", "test")
    best = checkpoint["best"]
    best = {"acc": best.get("acc", best.get("test_acc")), "epoch": best["epoch"]}
    metrics = {
        "status": "complete",
        "history": checkpoint["history"],
        "final": final_record(checkpoint["history"], best, split),
        "loss_hparams": checkpoint.get("loss_hparams"),
    }
    ckpt.save_epoch(out, checkpoint, metrics)


def restore(run: RunState, checkpoint: dict) -> None:
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.criterion.load_state_dict(checkpoint["criterion"])
    run.history, run.step, run.start_epoch = checkpoint["history"], checkpoint["step"], checkpoint["epoch"] + 1
    best = checkpoint["best"]  # {"acc", "epoch"}; runs made before eval_split saved {"test_acc", "epoch"}
    run.best = {"acc": best.get("acc", best.get("test_acc")), "epoch": best["epoch"]}
    ckpt.set_rng_state(checkpoint["rng"])
    say(run.config, f"resuming {run.out} after epoch {run.start_epoch} of {run.config.epochs}")


def check_finite(run: RunState, losses: torch.Tensor, step: int, epoch: int) -> None:
    finite = torch.isfinite(losses)
    if not dist_utils.any_rank(not bool(finite.all()), run.device):
        return
    bad = int((~finite).nonzero()[0].item()) if not bool(finite.all()) else -1
    where = f"step {bad + 1} of {len(finite)}" if bad >= 0 else "another process"
    value = losses[bad].item() if bad >= 0 else "non-finite"
    first = step - len(finite) + max(bad, 0) + 1
    raise NonFiniteLossError(
        f"the loss became {value} in epoch {epoch + 1}, {where} (global step {first}); the "
        f"last good checkpoint is kept in {run.out}. Try a smaller --lr or --lam."
    )


def save(run: RunState, epoch: int) -> None:
    complete = epoch + 1 == run.config.epochs
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "criterion": run.criterion.state_dict(),
        "epoch": epoch,
        "step": run.step,
        "history": run.history,
        "best": run.best,
        "rng": ckpt.rng_state(),
        "complete": complete,
        "config": run.config.to_dict(),
        "loss_hparams": run.criterion.hparams,
    }
    metrics = {
        "status": "complete" if complete else "running",
        "history": run.history,
        "final": final_record(run.history, run.best, run.split) if complete else None,
        "loss_hparams": run.criterion.hparams,
    }
    ckpt.save_epoch(run.out, state, metrics)


def epoch_line(record: dict, split: str, epochs: int) -> str:
    parts = "  ".join(f"{k} {record[k]:.4f}" for k in ("loss", "ce", "cc", "d_intra", "d_inter") if k in record)
    ratio = ""
    if f"{split}_intra_inter" in record:
        ratio = f"  {split}_intra/inter {record[f'{split}_intra_inter']:.3f}"
        ratio += " (attention collapsed)" if record.get(f"{split}_attention_collapsed") else ""
    return (
        f"epoch {record['epoch']:3d}/{epochs}  {parts}  train_acc {record['train_acc']:.2f}  "
        f"{split}_acc {record[f'{split}_acc']:.2f}{ratio}  {record['seconds']:.1f}s  "
        f"{record['images_per_sec']:.0f} img/s"
    )


def say(config: Any, message: str) -> None:
    if not config.quiet and dist_utils.is_main_process():
        print(message, flush=True)
