"""MNIST in torchvision's layout, ``<root>/MNIST/raw/`` IDX files (unpacked or ``.gz``), padded to 32x32.
IDX: bytes 0, 0, 0x08 (uint8), ndim; ndim big-endian uint32 sizes; the values, row-major."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import DatasetMissingError, short

__all__ = ["load_mnist", "read_idx", "MNIST_FILES"]

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """The uint8 ``ndim``-dimensional array of an IDX file, read from ``path`` or else ``path.gz``."""
    blob = path.read_bytes() if path.is_file() else gzip.decompress(path.with_name(path.name + ".gz").read_bytes())
    start, dims = 4 + 4 * blob[3], tuple(np.frombuffer(blob, dtype=">u4", count=blob[3], offset=4).tolist())
    if blob[:4] != bytes([0, 0, 8, ndim]) or len(blob) != start + math.prod(dims):
        raise ValueError(f"{path.name}: {len(blob)} bytes, not a uint8 {ndim}-d IDX file (header: sizes {dims})")
    return torch.from_numpy(np.frombuffer(blob, dtype=np.uint8, offset=start).reshape(dims).copy())


def _missing_message(root: Path, extra: str = "") -> str:
    raw = root.resolve() / "MNIST" / "raw"
    files = "\n".join(f"    {raw / f}   (or {f}.gz)" for f in MNIST_FILES)
    return (
        f"Dataset 'mnist' not found. Expected the four IDX files (unpacked or .gz):\n{files}\n{extra}"
        f"To get them: run with --download (load_tensors(..., download=True)), or copy the files into {raw}/. "
        f"Use --data-dir to point at a different data folder."
    )


def load_mnist(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The 60,000 train or 10,000 test digits, zero-padded from 28x28 to 32x32."""
    raw = root / "MNIST" / "raw"
    present = all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in MNIST_FILES)
    if download and not present:
        from torchvision.datasets import MNIST

        try:  # fetches the four .gz files, checks their md5 and unpacks them into raw/
            MNIST(str(root), train=True, download=True)
        except Exception as exc:  # network errors, 503s, checksum failures
            raise DatasetMissingError(_missing_message(root, f"The download failed: {short(exc)}\n")) from None
    elif not present:
        raise DatasetMissingError(_missing_message(root))
    prefix = "train" if split == "train" else "t10k"
    try:
        images = F.pad(read_idx(raw / f"{prefix}-images-idx3-ubyte", 3)[:, None], (2, 2, 2, 2))  # 28x28 -> 32x32
        labels = read_idx(raw / f"{prefix}-labels-idx1-ubyte", 1).to(torch.int64)  # counts checked by load_tensors
    except Exception as exc:  # truncated, not gzip (OSError, EOFError, zlib.error), not IDX, not MNIST's
        raise ValueError(
            f"mnist: the IDX files {prefix}-*-ubyte in {raw.resolve()} cannot be read ({short(exc)}): truncated or "
            "not MNIST's. Delete them and fetch them again (--download), or copy good ones there."
        ) from None
    return images, labels
