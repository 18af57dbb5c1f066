"""The one training loop: a :class:`~ccloss.config.TrainConfig` in, a run directory out.

Read it top-down: :func:`train_one_epoch` is the whole method in one loop (forward, CE + lambda*CC,
backward, step), :func:`evaluate` runs a model over a set (both take any iterable of ``(x, y)``, a
torch DataLoader for one), and :func:`fit` puts them together with
what a real run needs: a run directory (``config.json``, ``metrics.json``, ``checkpoint.pt``, each
written atomically), resuming after a crash (on the CPU a resumed run ends with exactly the metrics
of an uninterrupted one), and torchrun (DistributedDataParallel; see docs/more_gpus.md). The
plumbing for those lives in :mod:`ccloss.runtime`.
"""

from __future__ import annotations

import atexit
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .config import TrainConfig
from .losses import Criterion
from .metrics import eval_record, structure_record
from .runtime import checkpoint as ckpt
from .runtime import distributed as dist_utils
from .runtime import run as run_state
from .runtime.atomic import read_json
from .runtime.devices import configure_cuda, cpu_threads_per_process, resolve_device
from .runtime.preemption import Preempted, sigterm_ends_after_epoch
from .runtime.run import NonFiniteLossError, RunState, say
from .runtime.setup import RunParts, build_run, num_classes_of, reference_loader

__all__ = [
    "TrainConfig",
    "NonFiniteLossError",
    "Preempted",
    "RunExistsError",
    "fit",
    "train_one_epoch",
    "evaluate",
    "model_device",
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


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def train_one_epoch(
    model: nn.Module,
    criterion: Criterion,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    step: int = 0,
    amp: bool = False,
    desc: str = "",
    quiet: bool = True,
) -> EpochResult:
    """One pass over ``loader`` (any iterable of ``(x, y)`` batches, e.g. a torch DataLoader; each batch
    is moved to the model's device): forward, loss (e.g. CE + lambda * CC), backward, optimiser step."""
    model.train()
    device = model_device(model)
    sums: dict[str, torch.Tensor] = {}
    losses: list[torch.Tensor] = []
    correct, seen = torch.zeros((), device=device), 0
    for x, y in _progress(loader, desc, quiet):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
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
def evaluate(
    model: nn.Module, loader: Iterable, device: torch.device | None = None, amp: bool = False, *, se_units: bool = False
) -> dict[str, torch.Tensor | None]:
    """Run the model over ``loader`` (any iterable of ``(x, y)``; batches go to ``device``, by default
    the model's); returns CPU tensors: logits, labels, features, attention (or None). With
    ``se_units``, also ``se_max``: per hidden unit of the CAM, its largest pre-activation over the set
    (a unit at <= 0 on every image is dead; None without a CAM)."""
    model.eval()
    device = model_device(model) if device is None else torch.device(device)
    outputs: dict[str, list] = {"logits": [], "labels": [], "features": [], "attention": []}
    cam = getattr(model, "cam", None)
    se_max: list[torch.Tensor] = []
    hook = None
    if se_units and cam is not None and hasattr(cam, "fc1"):
        hook = cam.fc1.register_forward_hook(lambda _m, _i, pre: se_max.append(pre.float().amax(dim=0).cpu()))
    try:
        for x, y in loader:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
                out = model(x.to(device, non_blocking=True))
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

    total = len(loader) if hasattr(loader, "__len__") else None
    return tqdm(loader, total=total, desc=desc, leave=False, mininterval=0.5)


# --------------------------------------------------------------------------------------------
# A whole run
# --------------------------------------------------------------------------------------------


def fit(
    config: TrainConfig,
    *,
    model: nn.Module | None = None,
    criterion: Criterion | None = None,
    train_loader: Iterable | None = None,
    eval_loader: Iterable | None = None,
    reference_loader: Iterable | None = None,
) -> dict:
    """Train (or resume, or load a finished run) and return the metrics dictionary.

    What is not given is built from ``config``: the model (``backbone``, ``cam`` ...), the criterion
    (``loss``, ``lam`` ...) and the loaders (``dataset``). Your own ``train_loader`` / ``eval_loader``
    are any iterables of ``(x, y)``, e.g. torch DataLoaders (resuming is exact only when they give the
    same batches again); ``reference_loader``, the training set without augmentation, is what the class
    measures compare against (without it, they are skipped for loaders of your own).

    Under ``torchrun`` (WORLD_SIZE > 1) this is DistributedDataParallel training: rank 0 alone
    checks, writes and reads the run directory; on the CPU each process uses ``cores //
    LOCAL_WORLD_SIZE`` threads. The process group is created on the first call and destroyed when
    the process exits.
    """
    parts = RunParts(model, criterion, train_loader, eval_loader, reference_loader)
    config.validate(data=not parts.custom_data)
    device_type = resolve_device(config.device).type
    created = not dist_utils.is_distributed()
    dist = dist_utils.init_distributed(device_type, timeout_s=DIST_TIMEOUT_S)
    if dist.is_distributed and created:  # kept for the process's life: several runs may share it
        atexit.register(dist_utils.cleanup_distributed)
    threads = torch.get_num_threads()
    try:
        if dist.is_distributed and device_type == "cpu":
            torch.set_num_threads(cpu_threads_per_process())
        return _fit(config, dist, parts)
    finally:
        torch.set_num_threads(threads)


def _fit(config: TrainConfig, dist, parts: RunParts) -> dict:
    device = resolve_device(config.device)
    if device.type == "cuda":
        device = configure_cuda(dist.local_rank)
    if dist.is_distributed and config.sync_bn and device.type != "cuda":
        raise ValueError(
            "--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on the CPU); "
            "drop --sync-bn for CPU (gloo) runs"
        )
    out = Path(config.out)
    hparams = parts.criterion.hparams if parts.criterion is not None else None
    hparams = hparams or config.resolved_loss_hparams(num_classes_of(config, parts))
    checkpoint = dist_utils.call_on_rank0(
        lambda: ckpt.prepare_run_dir(config.to_dict(), out, config.resume, config.overwrite, loss_hparams=hparams)
    )
    if checkpoint is not None and checkpoint.get("complete") and "history" in checkpoint and dist.rank == 0:
        run_state.finish_from_checkpoint(out, checkpoint)  # killed between the last checkpoint and its metrics.json
    elif checkpoint is None or not checkpoint.get("complete"):
        run = build_run(config, dist, device, out, checkpoint, parts)
        with sigterm_ends_after_epoch() as preempted:
            for epoch in range(run.start_epoch, config.epochs):
                _run_epoch(run, epoch)
                if epoch + 1 < config.epochs and dist_utils.any_rank(preempted(), run.device):
                    raise Preempted(
                        f"SIGTERM: stopped after epoch {epoch + 1} of {config.epochs}, whose checkpoint is in {out}; "
                        "rerun with --resume (resume=True) to continue"
                    )
    return dist_utils.broadcast_object(read_json(out / ckpt.METRICS_FILE) if dist.rank == 0 else None)


def _set_epoch(loader, epoch: int) -> None:
    """``set_epoch`` of our loaders, or of a DataLoader's sampler (a DistributedSampler's shuffling)."""
    for owner in (loader, getattr(loader, "sampler", None)):
        if hasattr(owner, "set_epoch"):
            owner.set_epoch(epoch)
            return


def _class_measures(run: RunState, evaluation: dict) -> dict:
    reference = reference_loader(run)
    if reference is None:
        say(run.config, "class measures skipped: give fit a reference_loader (the training set, no augmentation)")
        return {}
    return structure_record(evaluate(run.model, reference, run.device, run.amp), evaluation, run.split)


def _run_epoch(run: RunState, epoch: int) -> None:
    config = run.config
    _set_epoch(run.train_loader, epoch)
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
    evaluation = evaluate(run.model, run.eval_loader, run.device, run.amp, se_units=True)
    record = {"epoch": epoch + 1, **result.means, "train_acc": result.train_acc, **eval_record(evaluation, run.split)}
    if epoch + 1 == config.epochs and config.class_measures and evaluation["attention"] is not None and run.rank == 0:
        record.update(_class_measures(run, evaluation))
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
