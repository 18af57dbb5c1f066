"""Everything that defines a training run, as one dataclass: the CLI flags and notebook 02's parameters.

Paper recipe (inferred, docs/paper_choices.md): SGD lr 0.1, momentum 0.9, weight decay 5e-4,
lr x0.1 at 50 % and 75 % of the epochs, batch 32, loss = CE + lambda * CC.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .attention import ACTIVATIONS, CAM_MIN_HIDDEN
from .data import DATASETS, DatasetInfo
from .losses import LOSSES, ROUTED, build_criterion, mcloss_xi_for, model_kwargs_for, routed_hparams
from .models import BACKBONES, STEMS, build_model
from .runtime.devices import DEVICES

__all__ = ["TrainConfig", "EVAL_SPLITS", "CC_SCOPES", "PRESETS", "build_for_config"]

EVAL_SPLITS = ("test", "val")
#: What fields added later meant before they existed (for config.json files written earlier).
LEGACY_DEFAULTS = {"cam_activation": "relu", "cam_min_hidden": 1, "eval_split": "test"}
CC_SCOPES = ("global", "local")
POSITIVE_INTEGERS = ("batch_size", "epochs", "cam_min_hidden")
#: Named settings (TrainConfig fields, every CC-Loss choice explicit, so a preset does not move when
#: the package's defaults do): the earlier defaults, what each does is in docs/usage.md ("Presets").
#: ``cc_v1``: the paper's lambda = 1 with the SE block as published; ``cc_v2``: lambda = 0.03, same block;
#: ``cc_pair``: the class-pair-balanced ratio (``form="pair_ratio"``, lambda = 0.1, SE floor 32), the
#: winner of the study's Part 5 on val (docs/study_cc_default.md).
PRESETS: dict[str, dict[str, Any]] = {
    "cc_v1": {
        "loss": "cc",
        "lam": 1.0,
        "form": "ratio",
        "group_size": None,
        "loss_params": {"squared": True, "eps": 1e-3, "normalize": "none", "warmup": 0.0, "ramp": 0.0},
        "cam": True,
        "cam_activation": "relu",
        "cam_min_hidden": 1,
    },
}
PRESETS["cc_v2"] = {**PRESETS["cc_v1"], "lam": 0.03, "loss_params": dict(PRESETS["cc_v1"]["loss_params"])}
PRESETS["cc_pair"] = {
    **PRESETS["cc_v1"],
    "lam": 0.1,
    "form": "pair_ratio",
    "loss_params": {**PRESETS["cc_v1"]["loss_params"], "tau": 0.1},
    "cam_min_hidden": 32,
}


@dataclass
class TrainConfig:
    """Everything that defines a training run (the CLI flags and notebook parameters)."""

    dataset: str = "digits"  #: digits, mnist5k (embedded), mnist, cifar100, cars196
    data_dir: str = "data"  #: where the datasets that need files live (see data/README.md)
    backbone: str = "resnet18"  #: resnet18 or vgg16 (with batch norm)
    width_mult: float = 0.25  #: 1.0 = standard widths; 0.25 for CPU demos
    stem: str | None = None  #: cifar or imagenet; None = the dataset's suggestion
    cam: bool = True  #: the channel attention module (CC-Loss needs it)
    cam_activation: str = "relu"  #: the SE block's hidden activation: relu or leaky_relu
    cam_min_hidden: int = CAM_MIN_HIDDEN  #: a floor on the SE block's hidden width: max(32, C // 16) units (1: none)
    pretrained: str | None = None  #: None, "imagenet" or a state-dict path
    loss: str = "cc"  #: ce, cc, focal, asoftmax, mcloss, ical, fical
    lam: float | None = None  #: weight of the loss's extra term; None = the loss's default
    form: str | None = None  #: CC-Loss form (ratio, sums, difference, log_ratio); None = default
    group_size: int | None = None  #: CC statistic over groups of this many samples; None = batch
    loss_params: dict = field(default_factory=dict)  #: other hyperparameters of the loss, by name
    batch_size: int = 32  #: per process (the paper's best is 32)
    epochs: int = 15
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: tuple = (0.5, 0.75)  #: fractions of the epochs where lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    seed: int = 0
    eval_split: str = "test"  #: evaluate on test, or on val (then train on train without val)
    device: str = "auto"  #: auto, cpu or cuda
    amp: bool = False  #: bf16 autocast (CUDA only)
    channels_last: bool = True  #: channels_last memory format (1.2x faster on a 2-core CPU too)
    compile: bool = False  #: torch.compile the model
    cc_scope: str = "global"  #: under torchrun: CC over the global batch or per process
    sync_bn: bool = False  #: under torchrun: synchronised BatchNorm
    download: bool = False  #: try torchvision's download where one exists
    out: str = "runs/default"  #: the run directory
    resume: bool = False  #: continue from out/checkpoint.pt (a complete run is just loaded)
    overwrite: bool = False  #: start again even if out/ holds a run
    quiet: bool = False  #: no progress bar or per-epoch lines
    class_measures: bool = True  #: after the last epoch: attention k-NN, linear probe, pair separation

    def validate(self, data: bool = True) -> TrainConfig:
        """Raise ValueError with the valid choices for anything of the wrong type, unknown or out of range
        (``data=False``: the dataset is not checked, for a run on loaders of your own)."""
        _check_field_types(self)
        for name, valid in (
            ("dataset", tuple(DATASETS) if data else (self.dataset,)),
            ("backbone", BACKBONES),
            ("loss", tuple(LOSSES)),
            ("device", DEVICES),
            ("cc_scope", CC_SCOPES),
            ("eval_split", EVAL_SPLITS),
            ("cam_activation", ACTIVATIONS),
            ("stem", (None, *STEMS)),
        ):
            value = getattr(self, name)
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(str(v) for v in valid if v)}")
        for name in POSITIVE_INTEGERS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr", "width_mult"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1 for f in self.lr_milestones):
            raise ValueError(f"lr_milestones are fractions of the epochs in (0, 1], got {self.lr_milestones!r}")
        return self

    @property
    def last_stage_width(self) -> int:
        return max(1, int(round(512 * self.width_mult)))

    def criterion_hparams(self, num_classes: int) -> dict:
        """The loss's hyperparameters: ``loss_params`` with ``lam``/``form``/``group_size`` routed
        in, and MC-Loss's xi = max(3, last-stage width // classes) unless given."""
        params = routed_hparams(self.loss, self.loss_params, **{k: getattr(self, k) for k in ROUTED})
        if self.loss == "mcloss" and "xi" not in params:
            params["xi"] = mcloss_xi_for(None, num_classes, base_width=self.last_stage_width)
        return params

    def resolved_loss_hparams(self, num_classes: int | None = None) -> dict:
        """Every hyperparameter of this run's loss, defaults filled in (what metrics.json records);
        ``num_classes`` defaults to the dataset's."""
        num_classes = DATASETS[self.dataset].num_classes if num_classes is None else num_classes
        return build_criterion(self.loss, num_classes, **self.criterion_hparams(num_classes)).hparams

    def for_loss(self, loss: str, **overrides: Any) -> TrainConfig:
        """This config for ``loss`` (``overrides`` applied): ``lam``/``form``/``group_size`` that
        the loss does not take are reset to None, so one base config serves a comparison of losses."""
        config = dataclasses.replace(self, loss=loss, **overrides)
        takes = LOSSES[config.loss].defaults if config.loss in LOSSES else {}
        resets = {k: None for k in ROUTED if k not in takes and getattr(config, k) is not None}
        return dataclasses.replace(config, **resets) if resets else config

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """The named settings of :data:`PRESETS` (e.g. ``"cc_v1"``), with ``overrides`` applied."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
        values = {**PRESETS[name], **overrides}
        values["loss_params"] = {**PRESETS[name].get("loss_params", {}), **overrides.get("loss_params", {})}
        return cls(**values)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["lr_milestones"] = list(self.lr_milestones)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid: {', '.join(sorted(known))}")
        values = {**LEGACY_DEFAULTS, **values}  # run directories written before these fields existed
        if "lr_milestones" in values:
            values["lr_milestones"] = tuple(values["lr_milestones"])
        return cls(**values)


def _type_ok(value: Any, kind: str) -> bool:
    base = kind.replace(" | None", "")
    if value is None and kind.endswith("| None"):
        return True
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    checks = {
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int": number and isinstance(value, int),
        "float": number and math.isfinite(value),
        "dict": isinstance(value, dict),
        "tuple": isinstance(value, (tuple, list)),
    }
    return checks.get(base, True)


def _check_field_types(config: TrainConfig) -> None:
    """Each field's value is of its annotated type (an int passes for a float), else a ValueError naming it."""
    for spec in dataclasses.fields(config):
        if spec.name in POSITIVE_INTEGERS:  # checked with their range in validate()
            continue
        value = getattr(config, spec.name)
        if not _type_ok(value, str(spec.type)):
            raise ValueError(f"{spec.name} must be {spec.type} (a finite number for float), got {value!r}")


def build_for_config(config: TrainConfig, info: DatasetInfo, device: torch.device):
    """Criterion and model for a config (the model adjusted to what the loss needs)."""
    criterion = build_criterion(config.loss, info.num_classes, **config.criterion_hparams(info.num_classes))
    kwargs = model_kwargs_for(criterion, info.num_classes, cam=config.cam, default_last_width=config.last_stage_width)
    model = build_model(
        config.backbone,
        info.num_classes,
        in_channels=info.in_channels,
        width_mult=config.width_mult,
        stem=config.stem or info.stem,
        pretrained=config.pretrained,
        cam_activation=config.cam_activation,
        cam_min_hidden=config.cam_min_hidden,
        **kwargs,
    )
    return criterion.to(device), model.to(device)
