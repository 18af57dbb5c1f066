"""Data-parallel helpers: a gradient-carrying all-gather for the CC term and process-group plumbing.

CC-Loss is a statistic over *pairs* of samples, so under data parallelism (DDP, one process per
GPU) a per-rank CC term is a different objective from the single-process one: each rank only sees
the pairs inside its own shard. Two scopes are offered (``make_cc_gather``):

- ``"global"``: every rank gathers the attention vectors and labels of all ranks (with gradients
  flowing back to the rank that produced each vector) and computes the CC statistic on the global
  batch. The DDP-averaged gradient then equals single-process training on the full batch.
- ``"local"``: no gather; each rank computes CC on its own shard. With ``group_size`` set to the
  per-rank batch this equals single-process training with ``group_size = per-rank batch``
  (the mean over groups = the DDP mean over ranks, for equal shards).

Scaling of the gathered gradient (the reason the backward *sums* over ranks)
----------------------------------------------------------------------------
Let W ranks hold equal shards A_1..A_W (A = concat) and let every rank compute the same value
L_r = CE_r + lam * CC(A), where CE_r is the mean over rank r's shard. DDP averages parameter
gradients: g = (1/W) sum_r dL_r/dtheta. The target is the gradient of
L = (1/W) sum_r CE_r + lam * CC(A) (the full-batch CE mean for equal shards, plus the global CC).

- CE: (1/W) sum_r dCE_r/dtheta is already the full-batch CE gradient.
- CC: on every rank s autograd delivers G_s = dCC/dA (the full B x C gradient, identical on all
  ranks). ``all_gather_with_grad`` returns to rank r the slice r of sum_s G_s = W * dCC/dA_r, so
  DDP's average gives (1/W) sum_r lam * W * dCC/dA_r . dA_r/dtheta = lam * dCC/dtheta.

The all-reduce *sum* in the backward (no division by W) cancels DDP's 1/W exactly. Returning only
the local slice without the all-reduce would under-weight the CC term by a factor W (the
alternative with the same result: gather without gradient, keep the local rows of the gradient and
multiply the CC loss by W). The derivation is exact for any per-rank losses: the backward computes
d(sum_s L_s)/dA_r, and DDP divides by W.

Requirement: equal per-rank batch sizes (``all_gather_single`` needs them and the scaling
argument assumes them). The gather checks the sizes first (one tiny collective) and raises a
``ValueError`` on every rank otherwise; the training loader guarantees equal shards
(``drop_last=True`` with a ``DistributedSampler``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "SCOPES",
    "DistInfo",
    "all_gather_with_grad",
    "all_gather_labels",
    "make_cc_gather",
    "init_distributed",
    "cleanup_distributed",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "barrier",
    "broadcast_object",
    "all_reduce_sum",
    "call_on_rank0",
    "any_rank",
    "prepare_for_ddp",
]

#: The CC-Loss scopes under data parallelism.
SCOPES = ("global", "local")

_MAX_DIMS = 8

GatherFn = Callable[[torch.Tensor, torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]


# ----------------------------------------------------------------------------- state helpers


def is_distributed() -> bool:
    """True when a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Rank 0, or the only process when not distributed."""
    return get_rank() == 0


def _comm_device(tensor: torch.Tensor) -> torch.device:
    """Device the collective must run on: NCCL needs CUDA tensors, gloo takes CPU (and CUDA)."""
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


# ``all_gather_single`` is the current name; ``all_gather_into_tensor`` (older releases) is deprecated
# in this torch and warns on every call.
_all_gather_single = getattr(dist, "all_gather_single", None) or getattr(dist, "all_gather_into_tensor", None)


def _gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (equal shapes on every rank) from all ranks along dim 0, rank order."""
    world = dist.get_world_size()
    tensor = tensor.contiguous()
    out = tensor.new_empty((world * tensor.shape[0], *tensor.shape[1:]))
    _all_gather_single(out, tensor)
    return out


def _check_equal_shapes(tensor: torch.Tensor, what: str) -> None:
    """Raise the same ValueError on every rank unless all ranks hold tensors of one shape."""
    if tensor.dim() == 0 or tensor.dim() > _MAX_DIMS:
        raise ValueError(
            f"{what}: can only gather tensors with 1 to {_MAX_DIMS} dimensions, got a {tensor.dim()}-d tensor"
        )
    # one row per rank: [ndim, size_0, ..., size_{ndim-1}, 0-padding]
    row = [tensor.dim(), *tensor.shape] + [0] * (_MAX_DIMS - tensor.dim())
    shapes = _gather_rows(torch.tensor([row], dtype=torch.long, device=_comm_device(tensor))).cpu()
    if not bool((shapes == shapes[0]).all()):
        sizes = [tuple(int(s) for s in r[1 : 1 + int(r[0])]) for r in shapes]
        raise ValueError(
            f"{what} needs equal per-rank shapes (equal per-rank batch sizes), got "
            + ", ".join(f"rank {r}: {s}" for r, s in enumerate(sizes))
            + "; use drop_last=True with a DistributedSampler so every rank gets the same batch size"
        )


# ----------------------------------------------------------------------------- gathers


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: all-gather along dim 0. Backward: all-reduce (sum) the gradient, keep this rank's rows."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank = dist.get_rank()
        ctx.rows = tensor.shape[0]
        device = _comm_device(tensor)
        ctx.device = tensor.device
        return _gather_rows(tensor.to(device)).to(tensor.device)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.to(_comm_device(grad_output)).contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows].to(ctx.device)


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0 (rank order), differentiably.

    The backward all-reduces (sums) the incoming gradient over ranks and returns this rank's
    slice, so that DDP's gradient averaging reproduces single-process training on the gathered
    batch (see the module docstring for the derivation). All ranks must hold the same shape
    (checked: a ``ValueError`` on every rank otherwise). Returns ``tensor`` itself when not
    distributed (no process group, or one rank).
    """
    if not is_distributed():
        return tensor
    _check_equal_shapes(tensor, "all_gather_with_grad")
    return _AllGatherWithGrad.apply(tensor)


def all_gather_labels(labels: torch.Tensor, check_sizes: bool = True) -> torch.Tensor:
    """Concatenate integer labels from every rank along dim 0 (rank order), without gradient.

    Equal per-rank sizes are required (checked unless ``check_sizes=False``, which saves one tiny
    collective when the caller already checked). Returns ``labels`` when not distributed.
    """
    if not is_distributed():
        return labels
    if check_sizes:
        _check_equal_shapes(labels, "all_gather_labels")
    with torch.no_grad():
        return _gather_rows(labels.detach().to(_comm_device(labels))).to(labels.device)


def _global_gather(attention: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if attention.shape[0] != labels.shape[0]:
        raise ValueError(
            f"label count ({labels.shape[0]}) does not match the number of attention vectors ({attention.shape[0]})"
        )
    gathered = all_gather_with_grad(attention)  # checks equal per-rank batch sizes
    return gathered, all_gather_labels(labels.to(attention.device), check_sizes=False)


def make_cc_gather(scope: str) -> GatherFn | None:
    """The function to assign to ``CCLoss.gather`` for a data-parallel scope.

    ``"global"``: gathers attention (with gradient) and labels from all ranks, so CC-Loss is
    computed on the global batch (identity when not distributed). ``"local"``: returns None (no
    gather; the training loop sets ``group_size`` to the per-rank batch).
    """
    if scope == "global":
        return _global_gather
    if scope == "local":
        return None
    raise ValueError(f"unknown CC-Loss scope {scope!r}; valid scopes: {', '.join(repr(s) for s in SCOPES)}")


# ----------------------------------------------------------------------------- process group


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly trivial) data-parallel run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    is_distributed: bool = False
    backend: str | None = None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device_type: str | torch.device, timeout_s: float = 1800.0) -> DistInfo:
    """Initialise the default process group from torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE).

    Backend ``"nccl"`` for ``cuda`` (and ``torch.cuda.set_device(LOCAL_RANK)``), ``"gloo"`` for
    ``cpu``. With WORLD_SIZE unset or 1 nothing is initialised and a non-distributed ``DistInfo``
    is returned. If a process group already exists it is reused.
    """
    device_type = torch.device(device_type).type if not isinstance(device_type, str) else device_type
    device_type = device_type.split(":")[0]
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistInfo()
    if device_type == "cuda":
        backend = "nccl"
    elif device_type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(
            f"distributed training supports device types 'cuda' (nccl) and 'cpu' (gloo), got {device_type!r}"
        )
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this PyTorch build")
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
        )
    return DistInfo(
        rank=dist.get_rank(),
        local_rank=local_rank,
        world_size=dist.get_world_size(),
        is_distributed=dist.get_world_size() > 1,
        backend=dist.get_backend(),
    )


def cleanup_distributed() -> None:
    """Destroy the default process group if one exists, after a barrier: no rank tears down its
    connections while another still has work in flight (gloo can abort the process otherwise)."""
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(RuntimeError):  # a peer that is already gone: destroy all the same
            barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Synchronise all ranks (no-op when not distributed)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s (picklable) ``obj`` on every rank; ``obj`` itself when not distributed."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place and return it (unchanged when not distributed)."""
    if not is_distributed():
        return tensor
    device = _comm_device(tensor)
    if device == tensor.device:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    else:
        moved = tensor.to(device)
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        tensor.copy_(moved)
    return tensor


def call_on_rank0(fn: Callable[[], Any]) -> Any:
    """``fn()`` run on rank 0 only, its result (or the exception it raised) on every rank.

    What touches the run directory runs here, so the other ranks never race rank 0 on its files
    and need no shared filesystem. An exception that cannot be pickled reaches the other ranks as
    a RuntimeError with its text; rank 0 raises the original.
    """
    if not is_distributed():
        return fn()
    if get_rank() != 0:
        kind, payload = broadcast_object(None)
        if kind == "error":
            raise payload
        return payload
    try:
        result = fn()
    except Exception as error:
        try:
            import pickle

            pickle.dumps(error)
            shared: Exception = error
        except Exception:
            shared = RuntimeError(f"rank 0: {type(error).__name__}: {error}")
        broadcast_object(("error", shared))
        raise
    broadcast_object(("ok", result))
    return result


def any_rank(flag: bool, device: str | torch.device = "cpu") -> bool:
    """True when ``flag`` is True on at least one rank (``flag`` itself when not distributed)."""
    if not is_distributed():
        return bool(flag)
    return bool(all_reduce_sum(torch.tensor([float(flag)], device=device)).item() > 0)


def prepare_for_ddp(config, model: torch.nn.Module, criterion: torch.nn.Module) -> torch.nn.Module:
    """SyncBatchNorm where asked; CC-Loss over the global batch (gathered) or per process."""
    if config.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    cc_module = getattr(criterion, "cc", None)
    if cc_module is not None:
        if config.cc_scope == "global":
            cc_module.gather = make_cc_gather("global")
        elif cc_module.group_size is None:
            cc_module.group_size = config.batch_size  # local scope: one group per process
    return model
