"""The one training loop: a :class:`~ccloss.config.TrainConfig` in, a run directory out.

Read it top-down: :func:`train_one_epoch` is the whole method in one loop (forward, CE + lambda*CC,
backward, step), :func:`evaluate` runs a model over a set, and :func:`fit` puts them together with
what a real run needs: a run directory (``config.json``, ``metrics.json``, ``checkpoint.pt``, each
written atomically), resuming after a crash (on the CPU a resumed run ends with exactly the metrics
of an uninterrupted one), and torchrun (DistributedDataParallel; see docs/more_gpus.md). The
plumbing for those lives in :mod:`ccloss.runtime`.
"""
from __future__ import annotations

import atexit
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from . import data as datasets
from .cc_loss import dataset_intra_inter
from .config import TrainConfig
from .loader import TensorLoader
from .losses import Criterion, build_criterion, model_kwargs_for
from .models import build_model
from .runtime import checkpoint as ckpt
from .runtime import distributed as dist_utils
from .runtime.atomic import read_json
from .runtime.devices import configure_cuda, cpu_threads_per_process, resolve_device, to_channels_last

__all__ = ["TrainConfig", "NonFiniteLossError", "RunExistsError", "fit", "train", "train_one_epoch", "evaluate",
           "build_for_config", "load_run", "is_complete"]

RunExistsError = ckpt.RunExistsError
is_complete = ckpt.is_complete
#: Under torchrun: how long a collective waits for a stuck rank before failing.
DIST_TIMEOUT_S = 600.0


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def build_for_config(config: TrainConfig, info: datasets.DatasetInfo, device: torch.device):
    """Criterion and model for a config (the model adjusted to what the loss needs)."""
    criterion = build_criterion(config.loss, info.num_classes, **config.criterion_hparams(info.num_classes))
    kwargs = model_kwargs_for(criterion, info.num_classes, cam=config.cam, default_last_width=config.last_stage_width)
    model = build_model(
        config.backbone, info.num_classes, in_channels=info.in_channels, width_mult=config.width_mult,
        stem=config.stem or info.stem, pretrained=config.pretrained, cam_activation=config.cam_activation,
        cam_min_hidden=config.cam_min_hidden, **kwargs,
    )
    return criterion.to(device), model.to(device)


# --------------------------------------------------------------------------------------------
# One epoch, one evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class EpochResult:
    means: dict[str, float]  #: mean over the steps of the loss and of each of its parts
    train_acc: float
    losses: torch.Tensor  #: the loss of every step (checked for NaN)
    step: int  #: the global step count after the epoch
    seen: int  #: training images this process saw


def train_one_epoch(model: nn.Module, criterion: Criterion, loader: TensorLoader, optimizer: torch.optim.Optimizer,
                    *, step: int = 0, amp: bool = False, desc: str = "", quiet: bool = True) -> EpochResult:
    """One pass over ``loader``: forward, loss (e.g. CE + lambda * CC), backward, optimiser step."""
    model.train()
    device = loader.device
    sums: dict[str, torch.Tensor] = {}
    losses: list[torch.Tensor] = []
    correct, seen = torch.zeros((), device=device), 0
    for x, y in _progress(loader, desc, quiet):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            output = model(x)
            result = criterion(output, y, step=step)
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        optimizer.step()
        step += 1
        losses.append(result.loss.detach())
        for name, value in {"loss": result.loss, **result.parts}.items():
            sums[name] = sums.get(name, 0) + value.detach().float()
        correct += (output.logits.detach().argmax(1) == y).sum()
        seen += y.shape[0]
    n = max(len(losses), 1)
    means = {name: float(value) / n for name, value in sums.items()}  # one host sync per epoch
    stacked = torch.stack(losses) if losses else torch.zeros(0)
    return EpochResult(means, 100.0 * float(correct) / max(seen, 1), stacked, step, seen)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, amp: bool = False) -> dict[str, Optional[torch.Tensor]]:
    """Run the model over a loader; returns CPU tensors: logits, labels, features, attention (or None),
    and ``se_max``: per hidden unit of the CAM, its largest pre-activation over the set (or None)."""
    model.eval()
    outputs: dict[str, list] = {"logits": [], "labels": [], "features": [], "attention": []}
    cam = getattr(model, "cam", None)
    se_max: list[torch.Tensor] = []
    hook = None
    if cam is not None and hasattr(cam, "fc1"):
        hook = cam.fc1.register_forward_hook(lambda _m, _i, pre: se_max.append(pre.float().amax(dim=0).cpu()))
    try:
        for x, y in loader:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
                out = model(x)
            outputs["logits"].append(out.logits.float().cpu())
            outputs["labels"].append(y.cpu())
            outputs["features"].append(out.features.float().cpu())
            if out.attention is not None:
                outputs["attention"].append(out.attention.float().cpu())
    finally:
        if hook is not None:
            hook.remove()
    result = {k: torch.cat(v) if v else None for k, v in outputs.items()}
    result["se_max"] = torch.stack(se_max).amax(dim=0) if se_max else None
    return result


def eval_record(evaluation: dict, split: str) -> dict:
    """``<split>_acc`` and, with the CAM, ``<split>_intra_inter``, ``_d_inter``, ``_attention_collapsed``
    (d_inter below 1e-3) and ``_se_dead_units`` (hidden units that fire on no image of the set)."""
    logits, labels = evaluation["logits"], evaluation["labels"]
    record = {f"{split}_acc": 100.0 * float((logits.argmax(1) == labels).float().mean())}
    if evaluation["attention"] is not None:
        stats = dataset_intra_inter(evaluation["attention"], labels)
        record[f"{split}_intra_inter"] = stats["ratio"]
        record[f"{split}_d_inter"] = stats["d_inter"]
        record[f"{split}_attention_collapsed"] = stats["collapsed"]
    if evaluation.get("se_max") is not None:
        record[f"{split}_se_dead_units"] = int((evaluation["se_max"] <= 0).sum())
        record["se_hidden_units"] = int(evaluation["se_max"].numel())
    return record


def _progress(loader, desc: str, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, total=len(loader), desc=desc, leave=False, mininterval=0.5)


# --------------------------------------------------------------------------------------------
# A whole run
# --------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """What the epochs of one run share, and the state they carry from one epoch to the next."""

    config: TrainConfig
    out: Path
    device: torch.device
    world_size: int
    rank: int
    model: nn.Module  #: the bare model (what is saved)
    train_model: nn.Module  #: the model as trained: DDP- and compile-wrapped where asked
    criterion: Criterion
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loader: TensorLoader
    eval_loader: TensorLoader
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


def fit(config: TrainConfig) -> dict:
    """Train (or resume, or load a finished run) and return the metrics dictionary.

    Under ``torchrun`` (WORLD_SIZE > 1) this is DistributedDataParallel training: rank 0 alone
    checks, writes and reads the run directory; on the CPU each process uses ``cores //
    LOCAL_WORLD_SIZE`` threads. The process group is created on the first call and destroyed when
    the process exits.
    """
    config.validate()
    device_type = resolve_device(config.device).type
    created = not dist_utils.is_distributed()
    dist = dist_utils.init_distributed(device_type, timeout_s=DIST_TIMEOUT_S)
    if dist.is_distributed and created:  # kept for the process's life: several runs may share it
        atexit.register(dist_utils.cleanup_distributed)
    threads = torch.get_num_threads()
    try:
        if dist.is_distributed and device_type == "cpu":
            torch.set_num_threads(cpu_threads_per_process())
        return _fit(config, dist)
    finally:
        torch.set_num_threads(threads)


train = fit  #: the name the CLI, the notebooks and earlier releases use


def _fit(config: TrainConfig, dist) -> dict:
    device = resolve_device(config.device)
    if device.type == "cuda":
        device = configure_cuda(dist.local_rank)
    if dist.is_distributed and config.sync_bn and device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on the CPU); "
                         "drop --sync-bn for CPU (gloo) runs")
    out = Path(config.out)
    checkpoint = dist_utils.call_on_rank0(
        lambda: ckpt.prepare_run_dir(config.to_dict(), out, config.resume, config.overwrite))
    if checkpoint is not None and checkpoint.get("complete") and "history" in checkpoint and dist.rank == 0:
        _finish_metrics(out, checkpoint)  # killed between the last checkpoint and its metrics.json
    elif checkpoint is None or not checkpoint.get("complete"):
        run = _start(config, dist, device, out, checkpoint)
        for epoch in range(run.start_epoch, config.epochs):
            _run_epoch(run, epoch)
    return dist_utils.broadcast_object(read_json(out / ckpt.METRICS_FILE) if dist.rank == 0 else None)


def _finish_metrics(out: Path, checkpoint: dict) -> None:
    split = checkpoint["config"].get("eval_split", "test")
    best = checkpoint["best"]
    best = {"acc": best.get("acc", best.get("test_acc")), "epoch": best["epoch"]}
    metrics = {"status": "complete", "history": checkpoint["history"],
               "final": final_record(checkpoint["history"], best, split),
               "loss_hparams": checkpoint.get("loss_hparams")}
    ckpt.save_epoch(out, checkpoint, metrics)


def _loaders(config: TrainConfig, dist, device: torch.device, channels_last: bool) -> tuple[TensorLoader, TensorLoader]:
    info = datasets.dataset_info(config.dataset)
    split = config.eval_split  # "val": train on train without val (nothing is chosen on test)
    x_train, y_train = datasets.load_tensors(config.dataset, "train", config.data_dir, config.download,
                                             holdout_val=split == "val")
    x_eval, y_eval = datasets.load_tensors(config.dataset, split, config.data_dir, False)
    train_loader = TensorLoader(x_train, y_train, config.batch_size, train=True, info=info, device=device,
                                seed=config.seed, shard=(dist.rank, dist.world_size), channels_last=channels_last)
    eval_loader = TensorLoader(x_eval, y_eval, 512, train=False, info=info, device=device, channels_last=channels_last)
    return train_loader, eval_loader


def _start(config: TrainConfig, dist, device: torch.device, out: Path, checkpoint: Optional[dict]) -> _Run:
    """Data, model, criterion and optimiser of a run, restored from ``checkpoint`` when resuming."""
    info = datasets.dataset_info(config.dataset)
    ckpt.seed_everything(config.seed)
    criterion, model = build_for_config(config, info, device)
    channels_last = False
    if config.channels_last:
        model, channels_last = to_channels_last(model, device)
        if not channels_last:
            _say(config, "channels_last is off for this model on the CPU (a torch bug with 1x1 strided "
                         "convolutions of < 8 channels; see ccloss.runtime.devices.channels_last_is_safe)")
    if dist.is_distributed:
        model = _distributed_model(config, model, criterion)
    train_loader, eval_loader = _loaders(config, dist, device, channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    milestones = sorted({max(1, int(round(f * config.epochs))) for f in config.lr_milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=config.lr_gamma)
    criterion.set_total_steps(config.epochs * len(train_loader))
    train_model: nn.Module = model
    if dist.is_distributed:
        ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if config.compile:
        train_model = torch.compile(train_model)
    run = _Run(config, out, device, dist.world_size, dist.rank, model, train_model, criterion, optimizer, scheduler,
               train_loader, eval_loader)
    if checkpoint is not None:
        _restore(run, checkpoint)
    elif dist.rank == 0:
        ckpt.start_run_dir(out, config.to_dict(), {"loss_hparams": criterion.hparams})
    return run


def _distributed_model(config: TrainConfig, model: nn.Module, criterion: Criterion) -> nn.Module:
    """SyncBatchNorm where asked; CC-Loss over the global batch (gathered) or per process."""
    if config.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    cc_module = getattr(criterion, "cc", None)
    if cc_module is not None:
        if config.cc_scope == "global":
            cc_module.gather = dist_utils.make_cc_gather("global")
        elif cc_module.group_size is None:
            cc_module.group_size = config.batch_size  # local scope: one group per process
    return model


def _restore(run: _Run, checkpoint: dict) -> None:
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.criterion.load_state_dict(checkpoint["criterion"])
    run.history, run.step, run.start_epoch = checkpoint["history"], checkpoint["step"], checkpoint["epoch"] + 1
    best = checkpoint["best"]  # {"acc", "epoch"}; runs made before eval_split saved {"test_acc", "epoch"}
    run.best = {"acc": best.get("acc", best.get("test_acc")), "epoch": best["epoch"]}
    ckpt.set_rng_state(checkpoint["rng"])
    _say(run.config, f"resuming {run.out} after epoch {run.start_epoch} of {run.config.epochs}")


def _check_finite(run: _Run, result: EpochResult, epoch: int) -> None:
    finite = torch.isfinite(result.losses)
    if not dist_utils.any_rank(not bool(finite.all()), run.device):
        return
    bad = int((~finite).nonzero()[0].item()) if not bool(finite.all()) else -1
    where = f"step {bad + 1} of {len(finite)}" if bad >= 0 else "another process"
    value = result.losses[bad].item() if bad >= 0 else "non-finite"
    first = result.step - len(finite) + max(bad, 0) + 1
    raise NonFiniteLossError(f"the loss became {value} in epoch {epoch + 1}, {where} (global step {first}); the "
                             f"last good checkpoint is kept in {run.out}. Try a smaller --lr or --lam.")


def _run_epoch(run: _Run, epoch: int) -> None:
    config = run.config
    run.train_loader.set_epoch(epoch)
    started = time.perf_counter()
    result = train_one_epoch(run.train_model, run.criterion, run.train_loader, run.optimizer, step=run.step,
                             amp=run.amp, desc=f"epoch {epoch + 1}/{config.epochs}", quiet=config.quiet)
    _check_finite(run, result, epoch)
    run.step = result.step
    run.scheduler.step()
    train_seconds = time.perf_counter() - started
    evaluation = evaluate(run.model, run.eval_loader, run.device, run.amp)
    record = {"epoch": epoch + 1, **result.means, "train_acc": result.train_acc, **eval_record(evaluation, run.split)}
    record.update(lr=run.optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - started,
                  train_seconds=train_seconds, images_per_sec=result.seen * run.world_size / train_seconds)
    run.history.append(record)
    if record[f"{run.split}_acc"] > run.best["acc"]:
        run.best = {"acc": record[f"{run.split}_acc"], "epoch": epoch + 1}
    if run.rank == 0:
        _save(run, epoch)
    _say(config, _epoch_line(record, run.split, config.epochs))


def _save(run: _Run, epoch: int) -> None:
    complete = epoch + 1 == run.config.epochs
    state = {
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "criterion": run.criterion.state_dict(), "epoch": epoch,
        "step": run.step, "history": run.history, "best": run.best, "rng": ckpt.rng_state(), "complete": complete,
        "config": run.config.to_dict(), "loss_hparams": run.criterion.hparams,
    }
    metrics = {"status": "complete" if complete else "running", "history": run.history,
               "final": final_record(run.history, run.best, run.split) if complete else None,
               "loss_hparams": run.criterion.hparams}
    ckpt.save_epoch(run.out, state, metrics)


def final_record(history: list[dict], best: dict, split: str = "test") -> dict:
    """The ``final`` entry of metrics.json: the last epoch's numbers, the best epoch, timings."""
    last = history[-1]
    final = {
        f"{split}_acc": last[f"{split}_acc"], f"best_{split}_acc": best["acc"], "best_epoch": best["epoch"],
        "train_acc": last["train_acc"], "epochs": last["epoch"], "seconds": sum(r["seconds"] for r in history),
        "images_per_sec": float(np.mean([r["images_per_sec"] for r in history])),
    }
    for key in (f"{split}_intra_inter", f"{split}_d_inter", f"{split}_attention_collapsed",
                f"{split}_se_dead_units", "se_hidden_units"):
        if key in last:
            final[key] = last[key]
    return final


def _epoch_line(record: dict, split: str, epochs: int) -> str:
    parts = "  ".join(f"{k} {record[k]:.4f}" for k in ("loss", "ce", "cc", "d_intra", "d_inter") if k in record)
    ratio = ""
    if f"{split}_intra_inter" in record:
        ratio = f"  {split}_intra/inter {record[f'{split}_intra_inter']:.3f}"
        ratio += " (attention collapsed)" if record.get(f"{split}_attention_collapsed") else ""
    return (f"epoch {record['epoch']:3d}/{epochs}  {parts}  train_acc {record['train_acc']:.2f}  "
            f"{split}_acc {record[f'{split}_acc']:.2f}{ratio}  {record['seconds']:.1f}s  "
            f"{record['images_per_sec']:.0f} img/s")


def _say(config: TrainConfig, message: str) -> None:
    if not config.quiet and dist_utils.is_main_process():
        print(message, flush=True)


def load_run(run_dir: str | os.PathLike, device: str = "cpu"):
    """Load a run directory: returns (config, metrics, model in eval mode on ``device``)."""
    run_dir = Path(run_dir)
    for name in (ckpt.CONFIG_FILE, ckpt.METRICS_FILE, ckpt.CHECKPOINT_FILE):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / name} is missing: is {run_dir} a finished run directory?")
    config = TrainConfig.from_dict(read_json(run_dir / ckpt.CONFIG_FILE))
    config.pretrained = None  # the checkpoint holds the weights
    config = _with_saved_hparams(config, read_json(run_dir / ckpt.METRICS_FILE))
    info = datasets.dataset_info(config.dataset)
    _, model = build_for_config(config, info, torch.device(device))
    state = torch.load(run_dir / ckpt.CHECKPOINT_FILE, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()
    return config, read_json(run_dir / ckpt.METRICS_FILE), model


def _with_saved_hparams(config: TrainConfig, metrics: dict) -> TrainConfig:
    """The loss hyperparameters the run was trained with (metrics.json records them), so a later
    change of a loss's defaults does not change what a loaded run means."""
    saved = metrics.get("loss_hparams")
    if not saved:
        return config
    import dataclasses

    return dataclasses.replace(config, lam=None, form=None, group_size=None, loss_params=dict(saved))
