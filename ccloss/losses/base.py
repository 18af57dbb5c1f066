"""The interface of every objective: ``criterion(model_output, labels, step) -> LossOutput(loss, parts)``; ``parts``:
``"ce"`` and each *unweighted* extra term, detached; float32 (float64 stays) under any autocast. A criterion only
checks the model's layout (ccloss.config chooses it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..cc_loss import compute_dtype
from ..models import ModelOutput, check_classes
from ..options import build, defaults, signature

__all__ = ["LossOutput", "Criterion", "NoOptions", "NONNEGATIVE", "as_compute", "check_labels", "detached", "require"]

#: ``option(..., **NONNEGATIVE)``: a finite number >= 0.
NONNEGATIVE: dict[str, Any] = {"must": "a finite number >= 0", "test": lambda v: v >= 0}


@dataclass
class LossOutput:
    """What a criterion returns."""

    loss: Tensor  #: scalar to backpropagate
    parts: dict[str, Tensor]  #: named detached scalars for logging; always has "ce"


@dataclass(frozen=True)
class NoOptions:
    """No hyperparameters."""


def as_compute(x: Tensor) -> Tensor:
    """``x`` in float32 (float64 stays float64): losses never run in bf16."""
    return x.to(compute_dtype(x))


def check_labels(logits: Tensor, labels: Tensor) -> None:
    require(logits.dim() == 2, f"logits must be B x K, got shape {tuple(logits.shape)}")
    shape = tuple(labels.shape)
    require(shape == logits.shape[:1], f"labels must be one class index per sample ({len(logits)}), got shape {shape}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")


def detached(**parts: Tensor) -> dict[str, Tensor]:
    return {key: value.detach() for key, value in parts.items()}


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


class Criterion(nn.Module):
    """Base class: ``forward(output, labels, step=0) -> LossOutput``; subclasses set ``name``, ``paper_name``,
    ``summary`` and ``Options`` (:func:`ccloss.options.option` fields), checked and set as attributes."""

    name: ClassVar[str] = ""
    paper_name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  #: one line for the CLI's table of losses
    Options: ClassVar[type] = NoOptions
    defaults: ClassVar[dict[str, Any]] = {}  #: every hyperparameter with its default, from Options

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.defaults = defaults(cls.Options)
        cls.__signature__ = signature(cls.Options, "num_classes")  # help() shows every hyperparameter

    def __init__(self, num_classes: int, **hparams: Any) -> None:
        super().__init__()
        check_classes(num_classes)
        self.num_classes = int(num_classes)
        self.hparams: dict[str, Any] = asdict(build(self.Options, hparams, f"loss {self.name!r} ({self.paper_name})"))
        for key, value in self.hparams.items():
            setattr(self, key, value)

    def set_total_steps(self, total_steps: int) -> None:
        """Told by the training loop before the first step; losses with a schedule use it."""

    def extra_repr(self) -> str:
        return ", ".join([f"num_classes={self.num_classes}"] + [f"{k}={v!r}" for k, v in self.hparams.items()])

    def _logits(self, output: ModelOutput, labels: Tensor) -> Tensor:
        logits = output.logits
        check_labels(logits, labels)
        k, built = logits.shape[1], self.num_classes
        require(k == built, f"{self.paper_name} was built for {built} classes, the logits have {k}")
        return logits

    def _check_cosine_head(self, output: ModelOutput) -> None:
        """Once per criterion: the head weights must be unit-norm rows (cosine head)."""
        if getattr(self, "_cosine_checked", False):
            return
        norms = output.head_weight.detach().float().norm(dim=1)
        message = f"{self.paper_name} needs the cosine head (bias-free, unit-norm class weights): head='cosine'"
        require(bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-2)), message + " (TrainConfig's default)")
        self._cosine_checked = True
