"""Where and how a model runs: the device, CPU threads per process, and the memory format."""

from __future__ import annotations

import os

import torch
from torch import nn

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; asking for CUDA without it is an error."""
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def configure_cuda(local_rank: int) -> torch.device:
    """This process's GPU, cuDNN autotuning and TF32 matmuls on (speed over bit-repeatability)."""
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return device


def cpu_threads_per_process() -> int:
    """This process's share of the node's cores (torchrun's OMP_NUM_THREADS=1 leaves cores idle)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1)))


def channels_last_is_safe(model: nn.Module, device: torch.device | str) -> bool:
    """False where channels_last crashes: torch 2.14.1's CPU backward of a 1x1 strided conv with < 8 input channels
    (a segfault; the ResNet18 shortcut at ``width_mult=0.0625``)."""
    return torch.device(device).type != "cpu" or not any(
        isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1) and m.in_channels < 8
        for m in model.modules()
    )


def to_channels_last(model: nn.Module, device: torch.device | str) -> tuple[nn.Module, bool]:
    """``(model in channels_last, True)``, or ``(model, False)`` where :func:`channels_last_is_safe` says no."""
    if not channels_last_is_safe(model, device):
        return model, False
    return model.to(memory_format=torch.channels_last), True
