"""CIFAR-100 from the official python pickles (``<root>/cifar-100-python/{train,test,meta}``)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from .common import DatasetMissingError, short

__all__ = ["load_cifar100", "read_pickle"]


def read_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        obj = pickle.load(f, encoding="latin1")
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_missing_message(root: Path, split: str, extra: str = "") -> str:
    base = root.resolve() / "cifar-100-python"
    return (
        f"Dataset 'cifar100' ({split} split) not found. Expected the unpacked official archive "
        f"(cifar-100-python.tar.gz):\n    {base / 'train'}\n    {base / 'test'}\n"
        f"    {base / 'meta'}   (optional: class names)\n"
        f"{extra}"
        f"To get it: run with --download (python -m ccloss train --dataset cifar100 --download), "
        f"i.e. load_tensors('cifar100', split, root, download=True), which fetches and verifies "
        f"the archive; or unpack cifar-100-python.tar.gz from "
        f"https://www.cs.toronto.edu/~kriz/cifar.html into {root.resolve()}/. "
        f"Use --data-dir to point at a different data folder."
    )


def load_cifar100(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    path = root / "cifar-100-python" / split
    if download:
        from torchvision.datasets import CIFAR100

        try:  # downloads if needed and verifies the md5 of train/test/meta
            CIFAR100(str(root), train=split == "train", download=True)
        except Exception as exc:
            raise DatasetMissingError(
                _cifar_missing_message(root, split, f"The download failed: {short(exc)}\n")
            ) from None
    if not path.is_file():
        raise DatasetMissingError(_cifar_missing_message(root, split))
    try:
        entry = read_pickle(path)
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry["fine_labels"], dtype=np.int64)
    except Exception as exc:  # garbage unpickles into anything: EOFError, KeyError, MemoryError, ...
        raise ValueError(
            f"{path} is not a CIFAR-100 python pickle (dict with 'data' N x 3072 uint8 and "
            f"'fine_labels'): {short(exc)}. Re-download it (--download)."
        ) from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: 'data' has shape {data.shape}, expected N x 3072")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels.copy())
