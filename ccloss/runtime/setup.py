"""Everything a run needs before its first epoch: data, model, criterion, optimiser, schedule.

:func:`ccloss.train.fit` builds what it is not given (:class:`RunParts`) from its
:class:`~ccloss.config.TrainConfig`; your own model, criterion or loaders (any iterables of
``(x, y)``) replace the built ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import data as datasets
from ..config import build_for_config
from ..loader import TensorLoader, loaders_for
from ..losses import build_criterion
from . import checkpoint as ckpt
from . import distributed as dist_utils
from . import run as run_state
from .devices import to_channels_last
from .run import RunState, say

__all__ = ["RunParts", "num_classes_of", "build_run", "reference_loader"]


@dataclass
class RunParts:
    """What :func:`ccloss.train.fit` may be given instead of building it from the config."""

    model: nn.Module | None = None  #: returns a ModelOutput (a :class:`~ccloss.models.CCModel`)
    criterion: nn.Module | None = None  #: a :class:`~ccloss.losses.Criterion`
    train_loader: Any = None  #: any iterable of (x, y) batches, e.g. a torch DataLoader
    eval_loader: Any = None  #: the evaluation set, iterated in order
    reference_loader: Any = None  #: the training set without augmentation: the class measures' reference

    @property
    def custom_data(self) -> bool:
        return self.train_loader is not None or self.eval_loader is not None


def num_classes_of(config, parts: RunParts) -> int:
    """The number of classes: the given criterion's or model's ``num_classes``, else the dataset's."""
    for given in (parts.criterion, parts.model):
        if getattr(given, "num_classes", None) is not None:
            return int(given.num_classes)
    if config.dataset not in datasets.DATASETS:
        raise ValueError(
            f"dataset {config.dataset!r} is not built in, so the number of classes is unknown: give a model "
            f"with a num_classes attribute (a CCModel has one) or a criterion; built in: {', '.join(datasets.DATASETS)}"
        )
    return datasets.dataset_info(config.dataset).num_classes


def _model_and_criterion(config, parts: RunParts, device: torch.device):
    if parts.model is None:
        criterion, model = build_for_config(config, datasets.dataset_info(config.dataset), device)
    else:
        model, classes = parts.model.to(device), num_classes_of(config, parts)
        criterion = build_criterion(config.loss, classes, **config.criterion_hparams(classes))
    return (parts.criterion if parts.criterion is not None else criterion).to(device), model


def _loaders(config, parts: RunParts, dist, device: torch.device, channels_last: bool):
    if parts.train_loader is None or parts.eval_loader is None:
        if parts.custom_data:
            raise ValueError("give both train_loader and eval_loader, or neither (both are then built from the config)")
        return loaders_for(config, (dist.rank, dist.world_size), device, channels_last)
    return parts.train_loader, parts.eval_loader


def _total_steps(config, loader, criterion) -> None:
    try:
        steps = len(loader)
    except TypeError:
        if getattr(criterion, "scheduled", False):
            raise ValueError("warmup/ramp need the number of steps: give a train_loader with a len()") from None
        return
    criterion.set_total_steps(config.epochs * max(steps, 1))


def build_run(config, dist, device: torch.device, out: Path, checkpoint: dict | None, parts: RunParts) -> RunState:
    """Data, model, criterion and optimiser of a run, restored from ``checkpoint`` when resuming."""
    ckpt.seed_everything(config.seed)
    criterion, model = _model_and_criterion(config, parts, device)
    channels_last = False
    if config.channels_last:
        model, channels_last = to_channels_last(model, device)
        if not channels_last:
            say(config, "channels_last is off for this model on the CPU (a torch bug with 1x1 strided convolutions "
                        "of < 8 channels; see ccloss.runtime.devices.channels_last_is_safe)")  # fmt: skip
    if dist.is_distributed:
        model = dist_utils.prepare_for_ddp(config, model, criterion)
    train_loader, eval_loader = _loaders(config, parts, dist, device, channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)  # fmt: skip
    milestones = sorted({max(1, int(round(f * config.epochs))) for f in config.lr_milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=config.lr_gamma)
    _total_steps(config, train_loader, criterion)
    train_model: nn.Module = model
    if dist.is_distributed:
        ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if config.compile:
        train_model = torch.compile(train_model)
    run = RunState(config, out, device, dist.world_size, dist.rank, model, train_model, criterion, optimizer,
                   scheduler, train_loader, eval_loader, parts.reference_loader)  # fmt: skip
    if checkpoint is not None:
        run_state.restore(run, checkpoint)
    elif dist.rank == 0:
        ckpt.start_run_dir(out, config.to_dict(), {"loss_hparams": criterion.hparams})
    return run


def reference_loader(run: RunState):
    """The training set in evaluation mode (no augmentation, in order), the reference of the attention
    k-NN and the linear probe: the one given, else the built training loader's images; None for a
    training loader of your own without a ``reference_loader`` (the class measures are then skipped)."""
    if run.reference_loader is not None:
        return run.reference_loader
    train = run.train_loader
    if not isinstance(train, TensorLoader):
        return None
    return TensorLoader(train.images, train.labels, 512, train=False, info=train.info, device=run.device,
                        channels_last=train.channels_last)  # fmt: skip
