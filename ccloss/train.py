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
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import data as datasets
from .config import TrainConfig, build_for_config
from .loader import TensorLoader, loaders_for
from .losses import Criterion
from .metrics import eval_record, structure_record
from .runtime import checkpoint as ckpt
from .runtime import distributed as dist_utils
from .runtime import run as run_state
from .runtime.atomic import read_json
from .runtime.devices import configure_cuda, cpu_threads_per_process, resolve_device, to_channels_last
from .runtime.run import NonFiniteLossError, RunState, say

__all__ = [
    "TrainConfig",
    "NonFiniteLossError",
    "RunExistsError",
    "fit",
    "train",
    "train_one_epoch",
    "evaluate",
    "build_for_config",
    "load_run",
    "is_complete",
]

RunExistsError = ckpt.RunExistsError
is_complete = ckpt.is_complete
load_run = ckpt.load_run
#: Under torchrun: how long a collective waits for a stuck rank before failing.
DIST_TIMEOUT_S = 600.0


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


def train_one_epoch(
    model: nn.Module,
    criterion: Criterion,
    loader: TensorLoader,
    optimizer: torch.optim.Optimizer,
    *,
    step: int = 0,
    amp: bool = False,
    desc: str = "",
    quiet: bool = True,
) -> EpochResult:
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
def evaluate(model: nn.Module, loader, device: torch.device, amp: bool = False) -> dict[str, torch.Tensor | None]:
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


def _progress(loader, desc: str, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, total=len(loader), desc=desc, leave=False, mininterval=0.5)


# --------------------------------------------------------------------------------------------
# A whole run
# --------------------------------------------------------------------------------------------


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
        raise ValueError(
            "--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on the CPU); "
            "drop --sync-bn for CPU (gloo) runs"
        )
    out = Path(config.out)
    hparams = config.resolved_loss_hparams()
    checkpoint = dist_utils.call_on_rank0(
        lambda: ckpt.prepare_run_dir(config.to_dict(), out, config.resume, config.overwrite, loss_hparams=hparams)
    )
    if checkpoint is not None and checkpoint.get("complete") and "history" in checkpoint and dist.rank == 0:
        run_state.finish_from_checkpoint(out, checkpoint)  # killed between the last checkpoint and its metrics.json
    elif checkpoint is None or not checkpoint.get("complete"):
        run = _start(config, dist, device, out, checkpoint)
        for epoch in range(run.start_epoch, config.epochs):
            _run_epoch(run, epoch)
    return dist_utils.broadcast_object(read_json(out / ckpt.METRICS_FILE) if dist.rank == 0 else None)


def _start(config: TrainConfig, dist, device: torch.device, out: Path, checkpoint: dict | None) -> RunState:
    """Data, model, criterion and optimiser of a run, restored from ``checkpoint`` when resuming."""
    info = datasets.dataset_info(config.dataset)
    ckpt.seed_everything(config.seed)
    criterion, model = build_for_config(config, info, device)
    channels_last = False
    if config.channels_last:
        model, channels_last = to_channels_last(model, device)
        if not channels_last:
            say(
                config,
                "channels_last is off for this model on the CPU (a torch bug with 1x1 strided "
                "convolutions of < 8 channels; see ccloss.runtime.devices.channels_last_is_safe)",
            )
    if dist.is_distributed:
        model = dist_utils.prepare_for_ddp(config, model, criterion)
    train_loader, eval_loader = loaders_for(config, (dist.rank, dist.world_size), device, channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    milestones = sorted({max(1, int(round(f * config.epochs))) for f in config.lr_milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=config.lr_gamma)
    criterion.set_total_steps(config.epochs * len(train_loader))
    train_model: nn.Module = model
    if dist.is_distributed:
        ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if config.compile:
        train_model = torch.compile(train_model)
    run = RunState(
        config,
        out,
        device,
        dist.world_size,
        dist.rank,
        model,
        train_model,
        criterion,
        optimizer,
        scheduler,
        train_loader,
        eval_loader,
    )
    if checkpoint is not None:
        run_state.restore(run, checkpoint)
    elif dist.rank == 0:
        ckpt.start_run_dir(out, config.to_dict(), {"loss_hparams": criterion.hparams})
    return run


def _train_eval_loader(run: RunState) -> TensorLoader:
    """The training split in evaluation mode (no augmentation, in order): the reference set of the
    attention k-NN and the linear probe (:func:`ccloss.metrics.structure_record`)."""
    train = run.train_loader
    return TensorLoader(
        train.images,
        train.labels,
        512,
        train=False,
        info=train.info,
        device=run.device,
        channels_last=train.channels_last,
    )


def _run_epoch(run: RunState, epoch: int) -> None:
    config = run.config
    run.train_loader.set_epoch(epoch)
    started = time.perf_counter()
    result = train_one_epoch(
        run.train_model,
        run.criterion,
        run.train_loader,
        run.optimizer,
        step=run.step,
        amp=run.amp,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        quiet=config.quiet,
    )
    run_state.check_finite(run, result.losses, result.step, epoch)
    run.step = result.step
    run.scheduler.step()
    train_seconds = time.perf_counter() - started
    evaluation = evaluate(run.model, run.eval_loader, run.device, run.amp)
    record = {"epoch": epoch + 1, **result.means, "train_acc": result.train_acc, **eval_record(evaluation, run.split)}
    if epoch + 1 == config.epochs and config.class_measures and evaluation["attention"] is not None and run.rank == 0:
        record.update(
            structure_record(evaluate(run.model, _train_eval_loader(run), run.device, run.amp), evaluation, run.split)
        )
    record.update(
        lr=run.optimizer.param_groups[0]["lr"],
        seconds=time.perf_counter() - started,
        train_seconds=train_seconds,
        images_per_sec=result.seen * run.world_size / train_seconds,
    )
    run.history.append(record)
    if record[f"{run.split}_acc"] > run.best["acc"]:
        run.best = {"acc": record[f"{run.split}_acc"], "epoch": epoch + 1}
    if run.rank == 0:
        run_state.save(run, epoch)
    say(config, run_state.epoch_line(record, run.split, config.epochs))
