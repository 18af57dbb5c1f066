"""The training loop: :func:`train_one_epoch`, :func:`evaluate`, :func:`fit` (resume, SIGTERM, torchrun)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import data as datasets
from .config import TrainConfig, build_for_config
from .loader import TensorLoader
from .losses import Criterion, build_criterion
from .metrics import eval_record, final_record, structure_record
from .runtime import checkpoint as ckpt
from .runtime import distributed as dist_utils
from .runtime.atomic import read_json
from .runtime.checkpoint import RunExistsError, load_run
from .runtime.devices import configure_cuda, resolve_device, to_channels_last
from .runtime.preemption import Preempted, sigterm_ends_after_epoch
from .runtime.run_dir import is_complete

__all__ = ["TrainConfig", "NonFiniteLossError", "Preempted", "RunExistsError", "fit", "train_one_epoch", "evaluate",
           "model_device", "load_run", "is_complete"]  # fmt: skip
DIST_TIMEOUT_S = 600.0  #: under torchrun: how long a collective waits for a stuck rank before failing


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


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


def train_one_epoch(model: nn.Module, criterion: Criterion, loader: Iterable, optimizer: torch.optim.Optimizer, *,
                    step: int = 0, amp: bool = False, desc: str = "", quiet: bool = True) -> EpochResult:  # fmt: skip
    """One pass over ``loader`` (batches go to the model's device): forward, loss, backward, optimiser step."""
    model.train()
    device = model_device(model)
    sums: dict[str, torch.Tensor] = {}
    losses: list[torch.Tensor] = []
    correct, seen = torch.zeros((), device=device), 0
    if not quiet and sys.stderr.isatty():
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc=desc, leave=False)
    for x, y in loader:
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
    means = {name: float(value) / max(len(losses), 1) for name, value in sums.items()}  # one host sync per epoch
    stacked = torch.stack(losses) if losses else torch.zeros(0)
    return EpochResult(means, 100.0 * float(correct) / max(seen, 1), stacked, step, seen)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device | None = None, amp: bool = False, *,
             se_units: bool = False) -> dict[str, Any]:  # fmt: skip
    """CPU ``logits``, ``labels``, ``features``, ``attention`` (None without CAM) over ``loader``, and ``accuracy`` (%);
    ``se_units``: ``se_max``, each CAM hidden unit's largest pre-activation (<= 0 everywhere: dead)."""
    model.eval()
    device = model_device(model) if device is None else torch.device(device)
    outputs: dict[str, list] = {"logits": [], "labels": [], "features": [], "attention": []}
    cam, se_max, hook = getattr(model, "cam", None), [], None
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
    result: dict[str, Any] = {k: torch.cat(v) if v else None for k, v in outputs.items()}
    result["se_max"] = torch.stack(se_max).amax(dim=0) if se_max else None
    logits, labels = result["logits"], result["labels"]
    result["accuracy"] = 100.0 * int((logits.argmax(1) == labels).sum()) / len(labels) if logits is not None else None
    return result


@dataclass
class Run:
    """What the epochs of a run share and carry from one to the next."""

    config: TrainConfig
    dist: dist_utils.DistInfo
    device: torch.device
    model: nn.Module  #: the bare model (what is saved)
    train_model: nn.Module  #: the model as trained: DDP- and compile-wrapped where asked
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_loader: Any  #: any iterable of (x, y)
    eval_loader: Any
    reference_loader: Any = None  #: the training set without augmentation (the class measures')
    history: list = field(default_factory=list)
    step: int = 0
    start_epoch: int = 0
    best: dict = field(default_factory=lambda: {"acc": -1.0, "epoch": -1})
    d_inter_init: float | None = None  #: the evaluation split's attention d_inter before training

    out = property(lambda self: Path(self.config.out))
    split = property(lambda self: self.config.eval_split)
    amp = property(lambda self: self.config.amp and self.device.type == "cuda")


def fit(config: TrainConfig, *, model: nn.Module | None = None, criterion: Criterion | None = None,
        train_loader: Iterable | None = None, eval_loader: Iterable | None = None,
        reference_loader: Iterable | None = None) -> dict:  # fmt: skip
    """Train (or resume, or load) a run; metrics.json's dictionary. What is not given is built from ``config``; loaders
    yield ``(x, y)``, ``reference_loader`` the unaugmented training set. Under torchrun rank 0 writes the run."""
    if (train_loader is None) != (eval_loader is None):
        raise ValueError("give both train_loader and eval_loader, or neither (both are then built from the config)")
    config.validate(data=train_loader is None)
    given = {"model": model, "criterion": criterion, "loaders": (train_loader, eval_loader),
             "reference": reference_loader}  # fmt: skip
    device_type = resolve_device(config.device).type
    dist = dist_utils.init_distributed(device_type, timeout_s=DIST_TIMEOUT_S)  # kept for the process's life
    device = configure_cuda(dist.local_rank) if device_type == "cuda" else torch.device("cpu")
    if dist.is_distributed and config.sync_bn and device_type != "cuda":
        raise ValueError("--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on the CPU); drop it")
    hparams = getattr(criterion, "hparams", None) or config.resolved_loss_hparams(_classes(config, given))
    checkpoint = dist_utils.call_on_rank0(lambda: ckpt.prepare_run_dir(config, hparams))  # paths checked first
    if checkpoint is None or not checkpoint.get("complete"):
        _train(_build(config, dist, device, checkpoint, given))
    elif "history" in checkpoint and dist.rank == 0:  # killed between its last checkpoint and metrics.json
        ckpt.save_epoch(Path(config.out), checkpoint, _metrics(checkpoint, config.eval_split))
    return dist_utils.broadcast_object(read_json(Path(config.out) / ckpt.METRICS_FILE) if dist.rank == 0 else None)


def _classes(config: TrainConfig, given: dict) -> int:
    for part in (given["criterion"], given["model"]):
        if getattr(part, "num_classes", None) is not None:
            return int(part.num_classes)
    if config.dataset not in datasets.DATASETS:
        raise ValueError(f"dataset {config.dataset!r} is not built in, so the number of classes is unknown: give "
                         "a model with a num_classes attribute (a CCModel has one) or a criterion")  # fmt: skip
    return datasets.dataset_info(config.dataset).num_classes


def _build(config: TrainConfig, dist, device: torch.device, checkpoint: dict | None, given: dict) -> Run:
    """Criterion and model, data, optimiser and schedule of a run; restored from ``checkpoint`` when resuming."""
    ckpt.seed_everything(config.seed)
    if given["model"] is None:
        criterion, model = build_for_config(config, datasets.dataset_info(config.dataset), device)
    else:  # your model: the config's criterion for its classes
        classes, model = _classes(config, given), given["model"].to(device)
        criterion = build_criterion(config.loss, classes, **config.criterion_hparams(classes))
    criterion = (given["criterion"] if given["criterion"] is not None else criterion).to(device)
    channels_last = False
    if config.channels_last:
        model, channels_last = to_channels_last(model, device)
        if not channels_last:
            _say(config, "channels_last is off for this model on the CPU (see runtime.devices.channels_last_is_safe)")
    if dist.is_distributed:
        model = dist_utils.prepare_for_ddp(config, model, criterion)
    train_loader, eval_loader = given["loaders"]
    if train_loader is None:
        train_loader, eval_loader = datasets.loaders_for(config, (dist.rank, dist.world_size), device, channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)  # fmt: skip
    milestones = sorted({max(1, int(round(f * config.epochs))) for f in config.lr_milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=config.lr_gamma)
    try:
        criterion.set_total_steps(config.epochs * max(len(train_loader), 1))
    except TypeError:  # no len(): fine unless the loss has a warmup or a ramp
        if getattr(criterion, "scheduled", False):
            raise ValueError("warmup/ramp need the number of steps: give a train_loader with a len()") from None
    ids = [device.index] if device.type == "cuda" else None
    train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids) if dist.is_distributed else model
    run = Run(config, dist, device, model, torch.compile(train_model) if config.compile else train_model, criterion,
              optimizer, scheduler, train_loader, eval_loader, given["reference"])  # fmt: skip
    if checkpoint is not None:
        for name in ("model", "optimizer", "scheduler", "criterion"):
            getattr(run, name).load_state_dict(checkpoint[name])
        run.history, run.step, run.start_epoch = checkpoint["history"], checkpoint["step"], checkpoint["epoch"] + 1
        run.best, run.d_inter_init = checkpoint["best"], run.history[-1].get(f"{run.split}_d_inter_init")
        ckpt.set_rng_state(checkpoint["rng"])
        _say(config, f"resuming {run.out} after epoch {run.start_epoch} of {config.epochs}")
    elif dist.rank == 0:
        ckpt.start_run_dir(run.out, config.to_dict(), {"loss_hparams": criterion.hparams})
    return run


def _train(run: Run) -> None:
    """An evaluation at initialisation (the attention's own scale), then the epochs until done or SIGTERM."""
    with sigterm_ends_after_epoch(run.out) as preempted:
        if run.start_epoch == 0:
            initial = eval_record(evaluate(run.model, run.eval_loader, run.device, run.amp), run.split)
            run.d_inter_init = initial.get(f"{run.split}_d_inter")
        for epoch in range(run.start_epoch, run.config.epochs):
            _run_epoch(run, epoch)
            if epoch + 1 < run.config.epochs and dist_utils.any_rank(preempted(), run.device):
                raise Preempted(f"SIGTERM: stopped after epoch {epoch + 1} of {run.config.epochs}, whose checkpoint "
                                f"is in {run.out}; rerun with --resume (resume=True) to continue")  # fmt: skip


def _run_epoch(run: Run, epoch: int) -> None:
    config, split = run.config, run.split
    loader = run.train_loader  # ours, or a DataLoader with a DistributedSampler: a new shuffle each epoch
    owner = loader if hasattr(loader, "set_epoch") else getattr(loader, "sampler", None)
    getattr(owner, "set_epoch", lambda _: None)(epoch)
    started = time.perf_counter()
    result = train_one_epoch(run.train_model, run.criterion, run.train_loader, run.optimizer, step=run.step,
                             amp=run.amp, desc=f"epoch {epoch + 1}/{config.epochs}", quiet=config.quiet)  # fmt: skip
    finite = torch.isfinite(result.losses)
    if dist_utils.any_rank(not bool(finite.all()), run.device):
        bad = int((~finite).nonzero()[0]) if not bool(finite.all()) else None
        here = f"step {bad + 1} of {len(finite)} (global step {run.step + bad + 1})" if bad is not None else ""
        raise NonFiniteLossError(f"the loss became {'non-finite' if bad is None else result.losses[bad].item()} in "
                                 f"epoch {epoch + 1}, {here or 'another process'}; the last good checkpoint is kept "
                                 f"in {run.out}. Try a smaller --lr or --lam.")  # fmt: skip
    run.step = result.step
    run.scheduler.step()
    train_seconds = time.perf_counter() - started
    evaluation = evaluate(run.model, run.eval_loader, run.device, run.amp, se_units=True)
    record = {"epoch": epoch + 1, **result.means, "train_acc": result.train_acc,
              **eval_record(evaluation, split, reference=run.d_inter_init)}  # fmt: skip
    if run.d_inter_init is not None:
        record[f"{split}_d_inter_init"] = run.d_inter_init
    if epoch + 1 == config.epochs and config.class_measures and run.dist.rank == 0:
        record.update(_class_measures(run, evaluation) if evaluation["attention"] is not None else {})
    speed = result.seen * run.dist.world_size / train_seconds
    record.update(lr=run.optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - started,
                  train_seconds=train_seconds, images_per_sec=speed)  # fmt: skip
    run.history.append(record)
    if record[f"{split}_acc"] > run.best["acc"]:
        run.best = {"acc": record[f"{split}_acc"], "epoch": epoch + 1}
    if run.dist.rank == 0:
        state = {name: getattr(run, name).state_dict() for name in ("model", "optimizer", "scheduler", "criterion")}
        state.update(epoch=epoch, step=run.step, history=run.history, best=run.best, rng=ckpt.rng_state(),
                     complete=epoch + 1 == config.epochs, config=config.to_dict(),
                     loss_hparams=run.criterion.hparams)  # fmt: skip
        ckpt.save_epoch(run.out, state, _metrics(state, split))
    parts = "  ".join(f"{k} {record[k]:.4f}" for k in ("loss", "ce", "cc", "d_intra", "d_inter") if k in record)
    ratio = f"  {split}_intra/inter {record[f'{split}_intra_inter']:.3f}" if f"{split}_intra_inter" in record else ""
    ratio += " (attention collapsed)" if record.get(f"{split}_attention_collapsed") else ""
    _say(config, f"epoch {epoch + 1:3d}/{config.epochs}  {parts}  train_acc {result.train_acc:.2f}  {split}_acc "
                 f"{record[f'{split}_acc']:.2f}{ratio}  {record['seconds']:.1f}s  {speed:.0f} img/s")  # fmt: skip


def _class_measures(run: Run, evaluation: dict) -> dict:
    """The class structure against the unaugmented training set (given, or the built loader's images)."""
    reference, train = run.reference_loader, run.train_loader
    if reference is None and isinstance(train, TensorLoader):
        reference = TensorLoader(train.images, train.labels, 512, train=False, info=train.info, device=run.device,
                                 channels_last=train.channels_last)  # fmt: skip
    if reference is None:
        _say(run.config, "class measures skipped: give fit a reference_loader (the training set, no augmentation)")
        return {}
    return structure_record(evaluate(run.model, reference, run.device, run.amp), evaluation, run.split)


def _metrics(state: dict, split: str) -> dict:
    """metrics.json of a checkpoint's ``state``: the history, and the final record once it is complete."""
    final = final_record(state["history"], state["best"], split) if state["complete"] else None
    return {"status": "complete" if state["complete"] else "running", "history": state["history"], "final": final,
            "loss_hparams": state.get("loss_hparams")}  # fmt: skip


def _say(config: TrainConfig, message: str) -> None:
    if not config.quiet and dist_utils.is_main_process():
        print(message, flush=True)
