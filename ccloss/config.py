"""Everything that defines a training run, and the one place it becomes a model and a loss. Paper recipe (inferred):
SGD lr 0.1, momentum 0.9, weight decay 5e-4, lr x0.1 at 50 % and 75 %, batch 32."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

import torch

from .attention import ACTIVATIONS, CAM_MIN_HIDDEN
from .cc_loss import CCOptions
from .data import DATASETS, DatasetInfo
from .losses import LOSSES, build_criterion, loss_class, mc_xi
from .models import BACKBONES, HEADS, STEMS, build_model
from .options import check, option
from .runtime.devices import DEVICES
from .runtime.distributed import SCOPES as CC_SCOPES

__all__ = ["TrainConfig", "EVAL_SPLITS", "CC_SCOPES", "COSINE_HEAD_LOSSES", "PRESETS", "build_for_config"]

EVAL_SPLITS = ("test", "val")
COSINE_HEAD_LOSSES = ("asoftmax", "ical", "fical")  #: losses defined on the cosine head's unit class vectors
ROUTED = ("lam", "form", "group_size")  #: hyperparameters with a field, routed to the losses that take them
_PUBLISHED_CC = {"squared": True, "eps": 1e-3, "relative_eps": False, "normalize": "none", "warmup": 0.0, "ramp": 0.0}
_PRESET_ROWS = (  # name, lambda, form, the SE block's hidden floor, more loss_params, what it is
    ("paper", 1.0, "ratio", 1, {}, "the paper's ratio, lambda 1, SE as published"),
    ("cc_v1", 1.0, "ratio", 1, {}, "the same, the first default, whose runs collapsed"),
    ("cc_v2", 0.03, "ratio", 1, {}, "lambda 0.03, the study's stage-two winner"),
    ("cc_pair", 0.1, "pair_ratio", 32, {"tau": 0.1}, "the class-pair form of Part 5"),
)
#: Named settings, every CC-Loss choice explicit (docs/usage.md, "Presets"), with the fixed eps of the committed runs.
# fmt: off
PRESETS: dict[str, dict[str, Any]] = {
    name: {"loss": "cc", "lam": lam, "form": form, "group_size": None, "loss_params": {**_PUBLISHED_CC, **extra},
           "cam": True, "cam_activation": "relu", "cam_min_hidden": hidden}
    for name, lam, form, hidden, extra, _ in _PRESET_ROWS
}
# fmt: on
PRESET_HELP = (
    "named settings (ccloss.config.PRESETS, all with the fixed eps of those runs): "
    + "; ".join(f"{row[0]} = {row[-1]}" for row in _PRESET_ROWS)
    + ". Flags that differ from their defaults override it."
)


def _positive(default: Any, help: str) -> Any:
    return option(default, help, must="a positive integer", test=lambda v: v >= 1)


def _number(default: Any, help: str, low: float = 0.0) -> Any:
    return option(default, help, must=f"a finite number > {low:g}", test=lambda v: v > low)


def _cc(name: str) -> Any:
    """A TrainConfig field for CC-Loss's option ``name``: its help and choices, default None (the loss's own)."""
    meta = next(f.metadata for f in fields(CCOptions) if f.name == name)
    return option(None, meta["help"] + "; default: the loss's", **{k: meta[k] for k in ("choices", "must", "test")})


# fmt: off
@dataclass
class TrainConfig:
    """Everything that defines a training run (the CLI flags and notebook parameters)."""

    dataset: str = option("digits", "dataset name", choices=tuple(DATASETS))
    data_dir: str = option("data", "folder holding the datasets (see data/README.md)")
    backbone: str = option("resnet18", "backbone network", choices=BACKBONES)
    width_mult: float = _number(0.25, "channel width multiplier (1.0 = standard; 0.25 for CPU demos)")
    stem: str | None = option(None, "first layers: cifar (3x3, no max-pool) or imagenet; default: the dataset's",
                              choices=STEMS)
    cam: bool = option(True, "the channel attention module (CC-Loss needs it)")
    cam_activation: str = option("relu", "the SE block's hidden activation (leaky_relu cannot die)",
                                 choices=ACTIVATIONS)
    cam_min_hidden: int = _positive(CAM_MIN_HIDDEN, "a floor on the SE block's hidden width: max(floor, C // 16) "
                                                    "(1: none)")
    head: str | None = option(None, "classifier head; default: cosine for asoftmax, ical, fical, else linear",
                              choices=HEADS)
    last_stage_width: int | None = option(None, "channels of the last stage; default: 512 x width_mult, or "
                                          "classes x xi for mcloss", must="None or a positive integer",
                                          test=lambda v: v >= 1)
    pretrained: str | None = option(None, "initial weights: 'imagenet' (torchvision, needs internet) or a path")
    loss: str = option("cc", "training objective", choices=tuple(LOSSES))
    lam: float | None = option(None, "weight of the loss's extra term (CC-Loss: lambda); default: the loss's",
                               must="None or a finite number >= 0", test=lambda v: v >= 0)
    form: str | None = _cc("form")
    group_size: int | None = _cc("group_size")
    loss_params: dict = option({}, "other hyperparameters of the loss, by name")
    batch_size: int = _positive(32, "mini-batch size per process (the paper's best: 32)")
    epochs: int = _positive(15, "training epochs")
    lr: float = _number(0.1, "SGD learning rate")
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(5e-4, "SGD weight decay")
    lr_milestones: tuple = option((0.5, 0.75), "fractions of the epochs where the lr is multiplied by lr_gamma",
                                  must="fractions of the epochs in (0, 1]",
                                  test=lambda v: all(type(f) in (int, float) and 0 < f <= 1 for f in v))  # fmt: skip
    lr_gamma: float = option(0.1, "lr decay factor")
    seed: int = option(0, "random seed (CPU runs are bit-for-bit repeatable)")
    eval_split: str = option("test", "evaluate on test, or on val (then train on train without val)",
                             choices=EVAL_SPLITS)
    device: str = option("auto", "auto (CUDA when available), cpu or cuda", choices=DEVICES)
    amp: bool = option(False, "bf16 autocast (CUDA only)")
    channels_last: bool = option(True, "channels_last memory format")
    compile: bool = option(False, "torch.compile the model")
    cc_scope: str = option("global", "under torchrun: CC-Loss over the global batch or per process", choices=CC_SCOPES)
    sync_bn: bool = option(False, "under torchrun: synchronised BatchNorm")
    download: bool = option(False, "try torchvision's download where one exists")
    out: str = option("runs/default", "run directory")
    resume: bool = option(False, "continue from out/checkpoint.pt (a finished run is just loaded)")
    overwrite: bool = option(False, "start again even if out/ holds a run")
    quiet: bool = option(False, "no progress bar or per-epoch lines")
    class_measures: bool = option(True, "after the last epoch: attention k-NN, linear probe, pair separation")
    # fmt: on

    def validate(self, data: bool = True) -> TrainConfig:
        """ValueError naming a field of the wrong type, unknown or out of range (``data=False``: not the dataset)."""
        return check(self, skip=() if data else ("dataset",))

    def resolved(self, num_classes: int) -> TrainConfig:
        """This config with the model's layout written out, the one place it is chosen: ``head`` cosine for
        :data:`COSINE_HEAD_LOSSES`, else linear; ``last_stage_width`` 512 x width_mult, for MC-Loss K x xi."""
        head = self.head or ("cosine" if self.loss in COSINE_HEAD_LOSSES else "linear")
        if self.loss in COSINE_HEAD_LOSSES and head != "cosine":
            paper = loss_class(self.loss).paper_name
            raise ValueError(f"{paper} needs the cosine head (bias-free, unit-norm class weights), got head={head!r}")
        if self.loss == "cc" and not self.cam:
            raise ValueError("CC-Loss needs the channel attention vectors: build the model with the CAM (cam=True)")
        width, params = self.last_stage_width or max(1, round(512 * self.width_mult)), dict(self.loss_params)
        if self.loss == "mcloss":
            xi = params.setdefault("xi", mc_xi(width, num_classes))
            if self.last_stage_width is not None and width < num_classes * xi:
                raise ValueError(f"MC-Loss with xi={xi} needs a last stage of at least {num_classes} x {xi} = "
                                 f"{num_classes * xi} channels, got last_stage_width={width}")  # fmt: skip
            width = self.last_stage_width or num_classes * xi
        return dataclasses.replace(self, head=head, last_stage_width=width, loss_params=params)

    def criterion_hparams(self, num_classes: int) -> dict:
        """The loss's hyperparameters: the resolved ``loss_params`` with ``lam``/``form``/``group_size`` routed in."""
        takes = loss_class(self.loss).defaults
        routed = {k: getattr(self, k) for k in ROUTED if getattr(self, k) is not None and k in takes}
        return {**self.resolved(num_classes).loss_params, **routed}

    def resolved_loss_hparams(self, num_classes: int | None = None) -> dict:
        """Every hyperparameter of this run's loss, defaults filled in (metrics.json's); default: the dataset's K."""
        num_classes = DATASETS[self.dataset].num_classes if num_classes is None else num_classes
        return build_criterion(self.loss, num_classes, **self.criterion_hparams(num_classes)).hparams

    def for_loss(self, loss: str, **overrides: Any) -> TrainConfig:
        """This config for ``loss`` with ``overrides``; lam, form, group_size it does not take reset to None."""
        config = dataclasses.replace(self, loss=loss, **overrides)
        takes = LOSSES[config.loss].defaults if config.loss in LOSSES else {}
        return dataclasses.replace(config, **{k: None for k in ROUTED if k not in takes})

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """The named settings of :data:`PRESETS` (e.g. ``"paper"``), with ``overrides`` applied."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
        params = {**PRESETS[name]["loss_params"], **overrides.get("loss_params", {})}
        return cls(**{**PRESETS[name], **overrides, "loss_params": params})

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "lr_milestones": list(self.lr_milestones)}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        if set(values) - known:
            raise ValueError(f"unknown TrainConfig field(s) {sorted(set(values) - known)}; valid: {', '.join(known)}")
        milestones = {"lr_milestones": tuple(values["lr_milestones"])} if "lr_milestones" in values else {}
        return cls(**{**values, **milestones})


def build_for_config(config: TrainConfig, info: DatasetInfo, device: torch.device):
    """(criterion, model) of a config: the layout of :meth:`TrainConfig.resolved`, nothing decided elsewhere."""
    config = config.resolved(info.num_classes)
    criterion = build_criterion(config.loss, info.num_classes, **config.criterion_hparams(info.num_classes))
    model = build_model(
        config.backbone, info.num_classes, in_channels=info.in_channels, width_mult=config.width_mult,
        stem=config.stem or info.stem, pretrained=config.pretrained, cam=config.cam, head=config.head,
        last_stage_width=config.last_stage_width, cam_activation=config.cam_activation,
        cam_min_hidden=config.cam_min_hidden,
    )  # fmt: skip
    return criterion.to(device), model.to(device)
