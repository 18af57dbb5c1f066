"""The interface every objective shares: a criterion takes the model's output, returns the loss and its parts.

A criterion takes the model's :class:`~ccloss.models.ModelOutput` and the labels and returns a
:class:`LossOutput`: the scalar to backpropagate and its named parts for logging::

    criterion = build_criterion("cc", num_classes=100)
    out = criterion(model(images), labels, step=global_step)
    out.loss.backward()
    log(out.parts)          # {"ce": ..., "cc": ..., "d_intra": ..., "d_inter": ...}

Conventions: ``parts`` always holds ``"ce"`` (the plain cross-entropy of the criterion's logits);
every other entry is the *unweighted* term, so ``loss = ce + weight * term`` can be read off the
log. All parts are detached scalar tensors (no host sync happens inside the criterion). Losses
are computed in float32 (float64 stays float64) whatever the autocast state.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from ..cc_loss import compute_dtype

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..models import ModelOutput

__all__ = ["LossOutput", "ModelNeeds", "Criterion", "as_compute", "check_labels", "detached", "require"]


@dataclass
class LossOutput:
    """What a criterion returns."""

    loss: Tensor  #: scalar to backpropagate
    parts: dict[str, Tensor]  #: named detached scalars for logging; always has "ce"


@dataclass(frozen=True)
class ModelNeeds:
    """What a loss requires of the model (read by :func:`ccloss.losses.model_kwargs_for`)."""

    cam: bool | None = None  #: True: CAM required; False: forbidden; None: either
    head: str | None = None  #: "cosine" / "linear" required; None: either
    channels_per_class: int | None = None  #: last stage needs num_classes * this channels


def as_compute(x: Tensor) -> Tensor:
    """``x`` in float32 (float64 stays float64): losses never run in bf16."""
    return x.to(compute_dtype(x))


def check_labels(logits: Tensor, labels: Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must be B x K, got shape {tuple(logits.shape)}")
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must be a 1-D tensor with one class index per sample ({logits.shape[0]}), "
            f"got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")


def detached(**parts: Tensor) -> dict[str, Tensor]:
    return {key: value.detach() for key, value in parts.items()}


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _checked(cls: type[Criterion], key: str, value: Any) -> Any:
    """``value`` as the type of ``cls.defaults[key]`` (ints pass as floats, whole floats as ints)."""
    default = cls.defaults[key]
    target: type = type(default) if default is not None else cls.hparam_types.get(key, str)
    if value is None and default is None:
        return None
    if target is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if target is int and not isinstance(value, bool) and isinstance(value, (int, float)) and float(value).is_integer():
        return int(value)
    if target in (bool, str) and isinstance(value, target):
        return value
    kind = target.__name__ + (" or None" if default is None else "")
    raise ValueError(f"hyperparameter {key!r} of loss {cls.name!r} must be {kind}, got {value!r}")


class _SignatureDefaults:
    """``Criterion.defaults``: the keyword-only parameters of the class's ``__init__`` with their
    defaults, read from the signature (the one place a hyperparameter and its default are written)."""

    def __get__(self, obj: Any, cls: type) -> dict[str, Any]:
        parameters = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


class Criterion(nn.Module):
    """Base class: ``forward(output, labels, step=0) -> LossOutput``.

    Subclasses set ``name`` (the registry key) and ``paper_name`` (how the paper's tables write it),
    declare their hyperparameters as keyword-only arguments of ``__init__`` with defaults (``defaults``
    reads them from the signature), pass them on with ``super().__init__(num_classes,
    **self.given(locals()))`` and read them as attributes (``self.lam`` ...). ``hparam_types`` gives
    the type of hyperparameters whose default is None.
    """

    name: ClassVar[str] = ""
    paper_name: ClassVar[str] = ""
    defaults = _SignatureDefaults()
    hparam_types: ClassVar[dict[str, type]] = {}
    #: one line for describe_losses()
    summary: ClassVar[str] = ""

    def __init__(self, num_classes: int, **hparams: Any) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or int(num_classes) < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.hparams: dict[str, Any] = self.resolve_hparams(hparams)
        for key, value in self.hparams.items():
            setattr(self, key, value)

    # ---- hyperparameters ----------------------------------------------------------------
    @classmethod
    def given(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The hyperparameters among a constructor's ``locals()``."""
        return {key: values[key] for key in cls.defaults}

    @classmethod
    def describe_hparams(cls) -> str:
        if not cls.defaults:
            return "(none)"
        return ", ".join(f"{key}={value!r}" for key, value in cls.defaults.items())

    @classmethod
    def resolve_hparams(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """Defaults updated by ``hparams``, each checked against its default's type."""
        unknown = sorted(set(hparams) - set(cls.defaults))
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {', '.join(map(repr, unknown))} for loss {cls.name!r} "
                f"({cls.paper_name}); its hyperparameters with defaults: {cls.describe_hparams()}"
            )
        resolved = dict(cls.defaults)
        for key, value in hparams.items():
            resolved[key] = _checked(cls, key, value)
        return resolved

    @property
    def needs(self) -> ModelNeeds:
        return ModelNeeds()

    def set_total_steps(self, total_steps: int) -> None:
        """Told by the training loop before the first step; losses with a schedule use it."""

    def extra_repr(self) -> str:
        items = ", ".join(f"{key}={value!r}" for key, value in self.hparams.items())
        return f"num_classes={self.num_classes}" + (f", {items}" if items else "")

    # ---- helpers --------------------------------------------------------------------------
    def _logits(self, output: ModelOutput, labels: Tensor) -> Tensor:
        logits = output.logits
        check_labels(logits, labels)
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"{self.paper_name} was built for {self.num_classes} classes but the logits have "
                f"{logits.shape[1]} columns"
            )
        return logits

    def _check_cosine_head(self, output: ModelOutput) -> None:
        """Once per criterion: the head weights must be unit-norm rows (cosine head)."""
        if getattr(self, "_cosine_checked", False):
            return
        norms = output.head_weight.detach().float().norm(dim=1)
        if not bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-2)):
            raise ValueError(
                f"{self.paper_name} needs the cosine head (bias-free, unit-norm class weights): "
                f"build the model with head='cosine' (model_kwargs_for does this)"
            )
        self._cosine_checked = True

    def forward(self, output: ModelOutput, labels: Tensor, step: int = 0) -> LossOutput:  # pragma: no cover
        raise NotImplementedError
