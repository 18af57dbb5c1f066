"""The one training loop: a :class:`TrainConfig` in, a run directory out.

A run directory holds ``config.json``, ``metrics.json`` (``status``, ``history``: one record per
epoch, and ``final`` once the run is complete) and ``checkpoint.pt`` (model, optimiser,
scheduler, criterion state and RNG states after the last finished epoch). Every file is written
atomically, so a run killed at any moment resumes with ``resume=True`` and ends with exactly the
metrics of an uninterrupted run on the CPU.

Paper recipe (inferred, METHOD.md): SGD lr 0.1, momentum 0.9, weight decay 5e-4, lr x0.1 at 50%
and 75% of the epochs, batch 32, loss = CE + lambda * CC with lambda = 1.
"""
from __future__ import annotations

import atexit
import dataclasses
import os
import pickle
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from . import data as datasets
from . import distributed as dist_utils
from .atomic import read_json, save_torch, write_json
from .attention import ACTIVATIONS
from .cc_loss import dataset_intra_inter
from .losses import LOSSES, build_criterion, model_kwargs_for
from .models import BACKBONES, build_model, to_channels_last

__all__ = ["TrainConfig", "NonFiniteLossError", "RunExistsError", "train", "evaluate", "load_run", "resolve_device"]

DEVICES = ("auto", "cpu", "cuda")
EVAL_SPLITS = ("test", "val")
CC_SCOPES = ("global", "local")
#: Under torchrun: how long a collective waits for a stuck rank before failing (a rank that dies
#: fails the others at once: torchrun stops them, and gloo reports the closed connection).
DIST_TIMEOUT_S = 600.0


@dataclass
class TrainConfig:
    """Everything that defines a training run (the CLI flags and notebook parameters)."""

    dataset: str = "digits"  #: digits (embedded), mnist, cifar100, cars196
    data_dir: str = "data"  #: where the datasets live (see data/README.md)
    backbone: str = "resnet18"  #: resnet18 or vgg16 (with batch norm)
    width_mult: float = 0.25  #: 1.0 = standard widths; 0.25 for CPU demos
    stem: Optional[str] = None  #: cifar or imagenet; None = the dataset's suggestion
    cam: bool = True  #: the channel attention module (CC-Loss needs it)
    cam_activation: str = "relu"  #: the SE block's hidden activation: relu or leaky_relu
    cam_min_hidden: int = 1  #: a floor on the SE block's hidden width (1: none, C // 16 units)
    pretrained: Optional[str] = None  #: None, "imagenet" or a state-dict path
    loss: str = "cc"  #: ce, cc, focal, asoftmax, mcloss, ical, fical
    lam: Optional[float] = None  #: weight of the loss's extra term; None = the loss's default
    form: Optional[str] = None  #: CC-Loss form (ratio, sums, difference, log_ratio); None = ratio
    group_size: Optional[int] = None  #: CC statistic over groups of this many samples; None = batch
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
    channels_last: bool = True  #: channels_last memory format (measured 1.2x faster on a 2-core CPU too; benchmarks/README.md)
    compile: bool = False  #: torch.compile the model
    cc_scope: str = "global"  #: under torchrun: CC over the global batch or per process
    sync_bn: bool = False  #: under torchrun: synchronised BatchNorm
    download: bool = False  #: try torchvision's download where one exists
    out: str = "runs/default"  #: the run directory
    resume: bool = False  #: continue from out/checkpoint.pt (a complete run is just loaded)
    overwrite: bool = False  #: start again even if out/ holds a run
    quiet: bool = False  #: no progress bar or per-epoch lines

    def validate(self) -> "TrainConfig":
        """Raise ValueError with the valid choices for anything unknown or out of range."""
        def check(name: str, value: Any, valid: tuple) -> None:
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(str, valid))}")

        check("dataset", self.dataset, tuple(datasets.DATASETS))
        check("backbone", self.backbone, BACKBONES)
        check("loss", self.loss, tuple(LOSSES))
        check("device", self.device, DEVICES)
        check("cc_scope", self.cc_scope, CC_SCOPES)
        check("eval_split", self.eval_split, EVAL_SPLITS)
        check("cam_activation", self.cam_activation, ACTIVATIONS)
        if isinstance(self.cam_min_hidden, bool) or not isinstance(self.cam_min_hidden, int) or self.cam_min_hidden < 1:
            raise ValueError(f"cam_min_hidden must be a positive integer, got {self.cam_min_hidden!r}")
        if self.stem is not None:
            check("stem", self.stem, ("cifar", "imagenet"))
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr", "width_mult"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not isinstance(self.loss_params, dict):
            raise ValueError(f"loss_params must be a dict of name -> value, got {self.loss_params!r}")
        return self

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["lr_milestones"] = list(self.lr_milestones)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid: {', '.join(sorted(known))}")
        values = dict(values)
        if "lr_milestones" in values:
            values["lr_milestones"] = tuple(values["lr_milestones"])
        return cls(**values)


#: Fields that may differ between a run and its resumption: where and how it runs, not what it
#: trains (``compile`` and ``channels_last`` change only the order of floating-point operations;
#: run directories made before channels_last became the default stay loadable and resumable).
_RESUME_FREE = {"out", "resume", "overwrite", "quiet", "device", "download", "data_dir", "compile", "channels_last"}


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class RunExistsError(RuntimeError):
    """The run directory already holds a run and neither resume nor overwrite was asked for."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _default_last_width(config: TrainConfig) -> int:
    return max(1, int(round(512 * config.width_mult)))


def _loss_hparams(config: TrainConfig, num_classes: int) -> dict:
    params = dict(config.loss_params)
    for name in ("lam", "form", "group_size"):
        value = getattr(config, name)
        if value is not None:
            params[name] = value
    if config.loss == "mcloss" and "xi" not in params:
        from .losses import mcloss_xi_for

        # xi = max(3, last-stage width // classes): the rule of MCLOSS_XI, at any width_mult
        params["xi"] = mcloss_xi_for(None, num_classes, base_width=_default_last_width(config))
    return params


def build_for_config(config: TrainConfig, info: "datasets.DatasetInfo", device: torch.device):
    """Criterion and model for a config (the model adjusted to what the loss needs)."""
    criterion = build_criterion(config.loss, info.num_classes, **_loss_hparams(config, info.num_classes))
    kwargs = model_kwargs_for(criterion, info.num_classes, cam=config.cam, default_last_width=_default_last_width(config))
    model = build_model(
        config.backbone, info.num_classes, in_channels=info.in_channels, width_mult=config.width_mult,
        stem=config.stem or info.stem, pretrained=config.pretrained, cam_activation=config.cam_activation,
        cam_min_hidden=config.cam_min_hidden, **kwargs,
    )
    return criterion.to(device), model.to(device)


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DDP


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, amp: bool = False) -> dict[str, torch.Tensor]:
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


def _eval_record(evaluation: dict, split: str) -> dict:
    """``{split}_acc`` and, with the CAM, ``{split}_intra_inter``, ``_d_inter``, ``_attention_collapsed``."""
    logits, labels = evaluation["logits"], evaluation["labels"]
    record = {f"{split}_acc": 100.0 * float((logits.argmax(1) == labels).float().mean())}
    if evaluation["attention"] is not None:
        stats = dataset_intra_inter(evaluation["attention"], labels)
        record[f"{split}_intra_inter"] = stats["ratio"]
        record[f"{split}_d_inter"] = stats["d_inter"]
        record[f"{split}_attention_collapsed"] = stats["collapsed"]
    if evaluation.get("se_max") is not None:  # a hidden unit that fires on no image of the set is dead
        record[f"{split}_se_dead_units"] = int((evaluation["se_max"] <= 0).sum())
        record["se_hidden_units"] = int(evaluation["se_max"].numel())
    return record


def _progress(iterable, total: int, desc: str, quiet: bool):
    enabled = not quiet and sys.stderr.isatty()
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, mininterval=0.5)


def _say(config: TrainConfig, message: str) -> None:
    if not config.quiet and dist_utils.is_main_process():
        print(message, flush=True)


def _prepare_run_dir(config: TrainConfig, out: Path) -> Optional[dict]:
    """Check the run directory; returns the checkpoint to resume from, if any."""
    checkpoint_path = out / "checkpoint.pt"
    has_run = checkpoint_path.exists() or (out / "metrics.json").exists()
    if has_run and config.overwrite:
        return None
    if has_run and not config.resume:
        raise RunExistsError(
            f"{out} already holds a run; pass --resume to continue (or load) it, or --overwrite to start again"
        )
    if not checkpoint_path.exists():
        return None
    saved = read_json(out / "config.json") if (out / "config.json").exists() else {}
    mine = config.to_dict()
    changed = sorted(k for k in mine if k not in _RESUME_FREE and k in saved and saved[k] != mine[k])
    if changed:
        details = ", ".join(f"{k}: {saved[k]!r} -> {mine[k]!r}" for k in changed)
        raise ValueError(f"cannot resume {out}: the config differs from the saved one ({details}); use another --out")
    return torch.load(checkpoint_path, map_location="cpu", weights_only=False)


def train(config: TrainConfig) -> dict:
    """Train (or resume, or load a finished run) and return the metrics dictionary.

    Under ``torchrun`` (WORLD_SIZE > 1) this is DistributedDataParallel training: rank 0 alone
    checks, writes and reads the run directory (its verdict, the checkpoint to resume from and
    the final metrics are broadcast, so the other ranks never touch the files and need no shared
    filesystem); on the CPU each process uses ``cores // LOCAL_WORLD_SIZE`` intra-op threads.
    The process group is created on the first call and destroyed when the process exits.
    """
    config.validate()
    device_type = resolve_device(config.device).type
    created = not dist_utils.is_distributed()
    dist = dist_utils.init_distributed(device_type, timeout_s=DIST_TIMEOUT_S)
    if dist.is_distributed and created:
        # kept for the life of the process: several runs in one torchrun process (compare, sweep,
        # a notebook) reuse it; destroying and re-creating it under torchrun's store is unreliable
        atexit.register(dist_utils.cleanup_distributed)
    threads = torch.get_num_threads()
    try:
        if dist.is_distributed and device_type == "cpu":
            torch.set_num_threads(_cpu_threads_per_process())
        return _train(config, dist)
    finally:
        torch.set_num_threads(threads)


def _cpu_threads_per_process() -> int:
    """The cores this process may use, shared among the processes on this node (LOCAL_WORLD_SIZE).

    torchrun sets OMP_NUM_THREADS=1 for several processes per node; CPU training would then
    leave cores idle, while torch's default (all cores in every process) oversubscribes them.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    local_world_size = max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1))
    return max(1, cores // local_world_size)


def _prepare_run_dir_on_rank0(config: TrainConfig, out: Path, dist) -> Optional[dict]:
    """:func:`_prepare_run_dir` on rank 0 only; every rank gets its verdict.

    The other ranks never look at the run directory (no race with rank 0 writing it, no shared
    filesystem needed): an error raised on rank 0 (RunExistsError, a changed config, ...) is
    raised on every rank, and the checkpoint to resume from is broadcast from rank 0. For a
    finished run the other ranks only learn ``{"complete": True}``.
    """
    if not dist.is_distributed:
        return _prepare_run_dir(config, out)
    checkpoint, error = None, None
    if dist.rank == 0:
        try:
            checkpoint = _prepare_run_dir(config, out)
        except Exception as caught:  # handed to every rank, then raised on rank 0 as it was
            error = caught
    if error is not None:
        try:
            pickle.dumps(error)
            shared_error = error
        except Exception:
            shared_error = RuntimeError(f"rank 0: {type(error).__name__}: {error}")
        dist_utils.broadcast_object(("error", shared_error))
        raise error
    if dist.rank == 0:
        kind = "fresh" if checkpoint is None else "complete" if checkpoint.get("complete") else "resume"
        dist_utils.broadcast_object((kind, checkpoint if kind == "resume" else None))
        return checkpoint
    kind, payload = dist_utils.broadcast_object(None)
    if kind == "error":
        raise payload
    return {"complete": True} if kind == "complete" else payload


def _rank0_metrics(out: Path) -> dict:
    """``out/metrics.json`` as rank 0 reads it, on every rank (a sync point under torchrun)."""
    return dist_utils.broadcast_object(read_json(out / "metrics.json") if dist_utils.is_main_process() else None)


def _train(config: TrainConfig, dist) -> dict:
    device = resolve_device(config.device)
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if dist.is_distributed and config.sync_bn and device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on the CPU); "
                         "drop --sync-bn for CPU (gloo) runs")
    out = Path(config.out)
    checkpoint = _prepare_run_dir_on_rank0(config, out, dist)
    if checkpoint is not None and checkpoint.get("complete"):
        return _rank0_metrics(out)

    info = datasets.dataset_info(config.dataset)
    split = config.eval_split
    train_images, train_labels = datasets.load_tensors(
        config.dataset, "train", config.data_dir, config.download, holdout_val=split == "val")
    test_images, test_labels = datasets.load_tensors(config.dataset, split, config.data_dir, False)
    seed_everything(config.seed)
    criterion, model = build_for_config(config, info, device)
    channels_last = False
    if config.channels_last:
        model, channels_last = to_channels_last(model, device)
        if not channels_last:
            _say(config, "channels_last is off for this model on the CPU (a torch bug with 1x1 strided convolutions "
                         "of < 8 channels; see ccloss.models.channels_last_is_safe)")
    if dist.is_distributed:
        if config.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        cc_module = getattr(criterion, "cc", None)
        if cc_module is not None:
            if config.cc_scope == "global":
                cc_module.gather = dist_utils.make_cc_gather("global")
            elif cc_module.group_size is None:
                cc_module.group_size = config.batch_size  # local scope: one group per process
    train_loader = datasets.TensorLoader(
        train_images, train_labels, config.batch_size, train=True, info=info, device=device, seed=config.seed,
        rank=dist.rank, world_size=dist.world_size, channels_last=channels_last,
    )
    test_loader = datasets.TensorLoader(
        test_images, test_labels, 512, train=False, info=info, device=device, channels_last=channels_last,
    )
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    milestones = sorted({max(1, int(round(f * config.epochs))) for f in config.lr_milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=config.lr_gamma)

    history: list[dict] = []
    start_epoch, step, best = 0, 0, {"acc": -1.0, "epoch": -1}
    criterion.set_total_steps(config.epochs * len(train_loader))
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        criterion.load_state_dict(checkpoint["criterion"])
        history, start_epoch, step = checkpoint["history"], checkpoint["epoch"] + 1, checkpoint["step"]
        saved_best = checkpoint["best"]  # {"acc", "epoch"}; runs made before eval_split: {"test_acc", "epoch"}
        best = {"acc": saved_best.get("acc", saved_best.get("test_acc")), "epoch": saved_best["epoch"]}
        _set_rng_state(checkpoint["rng"])
        _say(config, f"resuming {out} after epoch {start_epoch} of {config.epochs}")
    elif dist.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("checkpoint.pt", "metrics.json"):
            if (out / stale).exists():
                (out / stale).unlink()
        write_json(out / "config.json", config.to_dict())
        write_json(out / "metrics.json", {"status": "running", "history": [], "final": None,
                                          "loss_hparams": criterion.hparams})

    train_model: nn.Module = model
    if dist.is_distributed:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        train_model = torch.compile(train_model)
    amp = config.amp and device.type == "cuda"

    for epoch in range(start_epoch, config.epochs):
        train_loader.set_epoch(epoch)
        train_model.train()
        started = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        step_losses: list[torch.Tensor] = []
        correct = torch.zeros((), device=device)
        seen = 0
        for x, y in _progress(train_loader, len(train_loader), f"epoch {epoch + 1}/{config.epochs}", config.quiet):
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                output = train_model(x)
                result = criterion(output, y, step=step)
            optimizer.zero_grad(set_to_none=True)
            result.loss.backward()
            optimizer.step()
            step += 1
            loss = result.loss.detach()
            step_losses.append(loss)
            sums["loss"] = sums.get("loss", 0) + loss.float()
            for name, value in result.parts.items():
                sums[name] = sums.get(name, 0) + value.detach().float()
            correct += (output.logits.detach().argmax(1) == y).sum()
            seen += y.shape[0]
        losses = torch.stack(step_losses)
        finite = torch.isfinite(losses)
        if dist.is_distributed:
            flag = dist_utils.all_reduce_sum((~finite).any().float().reshape(1))
            all_finite = bool(flag.item() == 0)
        else:
            all_finite = bool(finite.all())
        if not all_finite:
            bad = int((~finite).nonzero()[0].item()) if not bool(finite.all()) else -1
            where = f"step {bad + 1} of {len(losses)}" if bad >= 0 else "another process"
            raise NonFiniteLossError(
                f"the loss became {losses[bad].item() if bad >= 0 else 'non-finite'} in epoch {epoch + 1}, {where} "
                f"(global step {step - len(losses) + max(bad, 0) + 1}); the last good checkpoint is kept in {out}. "
                f"Try a smaller --lr or --lam."
            )
        scheduler.step()
        train_seconds = time.perf_counter() - started
        evaluation = evaluate(_unwrap(train_model), test_loader, device, amp)
        seconds = time.perf_counter() - started
        steps = len(losses)
        record = {"epoch": epoch + 1}
        record.update({name: float(value) / steps for name, value in sums.items()})
        record["train_acc"] = 100.0 * float(correct) / max(seen, 1)
        record.update(_eval_record(evaluation, split))
        record.update({
            "lr": optimizer.param_groups[0]["lr"], "seconds": seconds, "train_seconds": train_seconds,
            "images_per_sec": seen * dist.world_size / train_seconds,
        })
        history.append(record)
        if record[f"{split}_acc"] > best["acc"]:
            best = {"acc": record[f"{split}_acc"], "epoch": epoch + 1}
        complete = epoch + 1 == config.epochs
        if dist.rank == 0:
            state = {
                "model": _unwrap(train_model).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "criterion": criterion.state_dict(), "epoch": epoch,
                "step": step, "history": history, "best": best, "rng": _rng_state(), "complete": complete,
                "config": config.to_dict(),
            }
            save_torch(out / "checkpoint.pt", state)
            metrics = {"status": "complete" if complete else "running", "history": history, "final": None,
                       "loss_hparams": criterion.hparams}
            if complete:
                metrics["final"] = _final_record(history, best, split)
            write_json(out / "metrics.json", metrics)
        parts = "  ".join(f"{k} {record[k]:.4f}" for k in ("loss", "ce", "cc", "d_intra", "d_inter") if k in record)
        ratio = f"  {split}_intra/inter {record[f'{split}_intra_inter']:.3f}" if f"{split}_intra_inter" in record else ""
        if record.get(f"{split}_attention_collapsed"):
            ratio += " (attention collapsed)"
        _say(config, f"epoch {epoch + 1:3d}/{config.epochs}  {parts}  train_acc {record['train_acc']:.2f}  "
                     f"{split}_acc {record[f'{split}_acc']:.2f}{ratio}  {seconds:.1f}s  {record['images_per_sec']:.0f} img/s")
    return _rank0_metrics(out)


def _final_record(history: list[dict], best: dict, split: str = "test") -> dict:
    last = history[-1]
    final = {
        f"{split}_acc": last[f"{split}_acc"], f"best_{split}_acc": best["acc"], "best_epoch": best["epoch"],
        "train_acc": last["train_acc"], "epochs": last["epoch"],
        "seconds": sum(r["seconds"] for r in history),
        "images_per_sec": float(np.mean([r["images_per_sec"] for r in history])),
    }
    for key in (f"{split}_intra_inter", f"{split}_d_inter", f"{split}_attention_collapsed",
                f"{split}_se_dead_units", "se_hidden_units"):
        if key in last:
            final[key] = last[key]
    return final


def load_run(run_dir: str | os.PathLike, device: str = "cpu"):
    """Load a run directory: returns (config, metrics, model in eval mode on ``device``)."""
    run_dir = Path(run_dir)
    for name in ("config.json", "metrics.json", "checkpoint.pt"):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / name} is missing: is {run_dir} a finished run directory?")
    config = TrainConfig.from_dict(read_json(run_dir / "config.json"))
    config.pretrained = None  # the checkpoint holds the weights
    info = datasets.dataset_info(config.dataset)
    _, model = build_for_config(config, info, torch.device(device))
    state = torch.load(run_dir / "checkpoint.pt", map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()
    return config, read_json(run_dir / "metrics.json"), model


def is_complete(run_dir: str | os.PathLike) -> bool:
    """True when ``run_dir/metrics.json`` says the run finished."""
    path = Path(run_dir) / "metrics.json"
    try:
        return read_json(path).get("status") == "complete"
    except (OSError, ValueError):
        return False
