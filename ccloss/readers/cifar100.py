"""CIFAR-100 from the official python pickles, ``<root>/cifar-100-python/{train,test}``."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from . import DatasetMissingError, short

__all__ = ["load_cifar100"]


def _missing_message(root: Path, split: str, extra: str = "") -> str:
    base = root.resolve() / "cifar-100-python"
    return (
        f"Dataset 'cifar100' ({split} split) not found. Expected the unpacked official archive:\n    {base / 'train'}\n"
        f"    {base / 'test'}\n{extra}To get it: run with --download (load_tensors(..., download=True)), which fetches "
        f"and verifies it, or unpack cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html into "
        f"{root.resolve()}/. Use --data-dir to point at a different data folder."
    )


def load_cifar100(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The 50,000 train or 10,000 test 32x32 images and their fine (100-class) labels."""
    path = root / "cifar-100-python" / split
    if download:
        from torchvision.datasets import CIFAR100

        try:  # downloads if needed and verifies the md5 of train/test/meta
            CIFAR100(str(root), train=split == "train", download=True)
        except Exception as exc:
            raise DatasetMissingError(_missing_message(root, split, f"The download failed: {short(exc)}\n")) from None
    if not path.is_file():
        raise DatasetMissingError(_missing_message(root, split))
    try:  # keys are str in the official (Python 2) pickles, bytes in Python 3 ones
        with open(path, "rb") as f:
            entry = {
                (k.decode() if isinstance(k, bytes) else k): v for k, v in pickle.load(f, encoding="latin1").items()
            }
        data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry["fine_labels"], dtype=np.int64)
    except Exception as exc:  # garbage unpickles into anything: EOFError, KeyError, MemoryError, ...
        what = "a CIFAR-100 python pickle (dict with 'data' N x 3072 uint8 and 'fine_labels')"
        raise ValueError(f"{path} is not {what}: {short(exc)}. Re-download it (--download).") from None
    return torch.from_numpy(data.copy()), torch.from_numpy(labels.copy())
