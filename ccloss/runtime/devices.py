"""Where and how a model runs: the device, CPU threads per process, and the memory format."""

from __future__ import annotations

import os

import torch
from torch import nn

__all__ = [
    "DEVICES",
    "resolve_device",
    "configure_cuda",
    "cpu_threads_per_process",
    "channels_last_is_safe",
    "to_channels_last",
]

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; asking for CUDA without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available; use --device cpu or auto")
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")
    return torch.device(name)


def configure_cuda(local_rank: int) -> torch.device:
    """This process's GPU, with cuDNN autotuning and TF32 matmuls on (speed over bit-repeatability)."""
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return device


def cpu_threads_per_process() -> int:
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


def channels_last_is_safe(model: nn.Module, device: torch.device | str) -> bool:
    """False where channels_last is known to crash: on the CPU, torch 2.14.1's backward of a 1x1
    strided convolution with fewer than 8 input channels in channels_last ends the process with a
    segmentation fault (e.g. ``nn.Conv2d(4, 8, 1, stride=2)``, the ResNet18 shortcut at
    ``width_mult=0.0625``). The training loop then keeps the default memory format."""
    if torch.device(device).type != "cpu":
        return True
    for module in model.modules():
        if (
            isinstance(module, nn.Conv2d)
            and module.kernel_size == (1, 1)
            and module.stride != (1, 1)
            and module.in_channels < 8
        ):
            return False
    return True


def to_channels_last(model: nn.Module, device: torch.device | str) -> tuple[nn.Module, bool]:
    """``(model, True)`` with the model in channels_last, or ``(model, False)`` unchanged where
    :func:`channels_last_is_safe` says it would crash; feed batches in the same format."""
    if not channels_last_is_safe(model, device):
        return model, False
    return model.to(memory_format=torch.channels_last), True
