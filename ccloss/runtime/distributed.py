"""torch.distributed plumbing and CC's gradient-carrying all-gather: scope ``"global"`` gathers every rank's attention
and labels, ``"local"`` nothing (``group_size`` = per-rank batch). The backward *sums* over ranks: rank r gets rows r
of sum_s dCC/dA = W dCC/dA_r, and DDP's 1/W average leaves the single-process gradient. Equal per-rank batches."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import torch
import torch.distributed as dist

from .devices import cpu_threads_per_process

SCOPES = ("global", "local")  #: the CC-Loss scopes under data parallelism
# ``all_gather_into_tensor`` (older releases) warns in this torch
_all_gather_single = getattr(dist, "all_gather_single", None) or getattr(dist, "all_gather_into_tensor", None)


@dataclass(frozen=True)
class DistInfo:  #: where this process stands in a (possibly trivial) data-parallel run
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    is_distributed: bool = False
    backend: str | None = None


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    return not is_distributed() or dist.get_rank() == 0


def _on_comm_device(tensor: torch.Tensor) -> torch.Tensor:
    """NCCL needs CUDA tensors; gloo takes CPU (and CUDA) ones."""
    nccl = dist.get_backend() == "nccl" and tensor.device.type != "cuda"
    return tensor.to(torch.device("cuda", torch.cuda.current_device())) if nccl else tensor


def _gather_rows(tensor: torch.Tensor, check: str = "") -> torch.Tensor:
    """Every rank's ``tensor`` along dim 0; with ``check``, a ValueError on every rank unless shapes agree."""
    if check:
        shapes: list = [None] * dist.get_world_size()
        dist.all_gather_object(shapes, tuple(tensor.shape))
        if len(set(shapes)) > 1:
            raise ValueError(f"{check} needs equal per-rank shapes (equal per-rank batch sizes), got "
                             + ", ".join(f"rank {r}: {s}" for r, s in enumerate(shapes))
                             + "; use drop_last=True with a DistributedSampler")  # fmt: skip
    tensor = _on_comm_device(tensor).contiguous()
    out = tensor.new_empty((dist.get_world_size() * tensor.shape[0], *tensor.shape[1:]))
    _all_gather_single(out, tensor)
    return out


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: all-gather along dim 0. Backward: all-reduce (sum) the gradient, keep this rank's rows."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows, ctx.device = dist.get_rank(), tensor.shape[0], tensor.device
        return _gather_rows(tensor, "all_gather_with_grad").to(tensor.device)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        grad = _on_comm_device(grad_output).contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows].to(ctx.device)


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` along dim 0 (rank order), differentiably; ``tensor`` when not distributed."""
    return _AllGatherWithGrad.apply(tensor) if is_distributed() else tensor


def all_gather_labels(labels: torch.Tensor, check: str = "all_gather_labels") -> torch.Tensor:
    """Every rank's labels along dim 0, without gradient; ``labels`` when not distributed."""
    with torch.no_grad():
        return _gather_rows(labels.detach(), check).to(labels.device) if is_distributed() else labels


def _global_gather(attention: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if attention.shape[0] != labels.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {attention.shape[0]} attention vectors")
    return all_gather_with_grad(attention), all_gather_labels(labels.to(attention.device), check="")


def make_cc_gather(scope: str) -> Callable | None:
    """What to assign to ``CCLoss.gather``: the global gather for ``"global"``, None for ``"local"``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown CC-Loss scope {scope!r}; valid scopes: {', '.join(repr(s) for s in SCOPES)}")
    return _global_gather if scope == "global" else None


def init_distributed(device_type: str | torch.device, timeout_s: float = 1800.0) -> DistInfo:
    """The process group of torchrun's environment (nccl / gloo), destroyed at exit; trivial when WORLD_SIZE <= 1."""
    env = {k: os.environ.get(k) or "0" for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    if not all(v.isdigit() for v in env.values()):
        raise ValueError(f"torchrun's environment must hold non-negative integers, got {env}")
    device_type, (world, rank, local_rank) = torch.device(device_type).type, map(int, env.values())
    if world <= 1:
        return DistInfo()
    if device_type not in ("cuda", "cpu"):
        raise ValueError(f"distributed training runs on 'cuda' (nccl) and 'cpu' (gloo), not {device_type!r}")
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", init_method="env://", rank=rank,
                                world_size=world, timeout=timedelta(seconds=timeout_s))  # fmt: skip
        atexit.register(cleanup_distributed)
        if device_type == "cpu":
            torch.set_num_threads(cpu_threads_per_process())
    return DistInfo(dist.get_rank(), local_rank, dist.get_world_size(), dist.get_world_size() > 1, dist.get_backend())


def cleanup_distributed() -> None:
    """Destroy the process group after a barrier (gloo can abort a process whose peer tears down early)."""
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(RuntimeError):  # a peer already gone: destroy all the same
            nccl = dist.get_backend() == "nccl"
            dist.barrier(device_ids=[torch.cuda.current_device()] if nccl else None)
        dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """``sys.exit(code)``; on a torchrun rank, the process group destroyed first (after a barrier) and then
    ``os._exit(code)``: the interpreter's teardown is skipped, where gloo's threads, still holding tensors, can
    abort a finished run (SIGABRT, "terminate called without an active exception")."""
    if not (dist.is_available() and dist.is_initialized()):
        sys.exit(code)
    cleanup_distributed()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s (picklable) ``obj`` on every rank; ``obj`` itself when not distributed."""
    box = [obj]
    if is_distributed():
        dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place and return it (unchanged when not distributed)."""
    if is_distributed():
        moved = _on_comm_device(tensor)
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        if moved is not tensor:
            tensor.copy_(moved)
    return tensor


def call_on_rank0(fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0 only, its result or its exception on every rank (the run directory's writes)."""
    if not is_distributed():
        return fn()
    outcome = None
    if dist.get_rank() == 0:
        try:
            outcome = ("ok", fn())
        except Exception as error:
            outcome = ("error", error)
    kind, payload = broadcast_object(outcome)
    if kind == "error":
        raise payload
    return payload


def any_rank(flag: bool, device: str | torch.device = "cpu") -> bool:
    """True when ``flag`` is True on at least one rank."""
    return bool(all_reduce_sum(torch.tensor([float(flag)], device=device)).item() > 0)


def prepare_for_ddp(config, model: torch.nn.Module, criterion: torch.nn.Module) -> torch.nn.Module:
    """SyncBatchNorm where asked; CC-Loss over the global batch (gathered) or per process."""
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) if config.sync_bn else model
    cc_module = getattr(criterion, "cc", None)
    if cc_module is not None and config.cc_scope == "global":
        cc_module.gather = make_cc_gather("global")
    elif cc_module is not None and cc_module.group_size is None:
        cc_module.group_size = config.batch_size  # local scope: one group per process
    return model
