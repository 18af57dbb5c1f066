"""MNIST from torchvision's on-disk layout (``<root>/MNIST/raw/`` IDX files), zero-padded to 32x32."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from ..runtime.atomic import atomic_write
from .common import DatasetMissingError, short

__all__ = ["load_mnist", "MNIST_FILES"]


MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _unpack(packed: Path, target: Path) -> None:
    with gzip.open(packed, "rb") as source:
        atomic_write(target, lambda out: shutil.copyfileobj(source, out), mode="wb")


def _unpack_mnist_gz(raw: Path) -> None:
    """torchvision only reads unpacked IDX files: unpack any ``.gz`` lacking its twin."""
    for fname in MNIST_FILES:
        target, packed = raw / fname, raw / f"{fname}.gz"
        if not target.is_file() and packed.is_file():
            try:
                _unpack(packed, target)
            except (OSError, EOFError) as exc:
                raise DatasetMissingError(
                    f"mnist: could not unpack {packed} ({exc}). Delete it and fetch it again "
                    f"(--download) or replace it with a good copy."
                ) from None


def _mnist_missing_message(root: Path, extra: str = "") -> str:
    raw = root.resolve() / "MNIST" / "raw"
    files = "\n".join(f"    {raw / f}   (or {f}.gz)" for f in MNIST_FILES)
    return (
        f"Dataset 'mnist' not found. Expected the four IDX files (unpacked or .gz):\n{files}\n"
        f"{extra}"
        f"To get them: run with --download (python -m ccloss train --dataset mnist --download), "
        f"i.e. load_tensors('mnist', split, root, download=True), or copy the files from "
        f"another machine into {raw}/. Use --data-dir to point at a different data folder."
    )


def load_mnist(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import MNIST

    raw = root / "MNIST" / "raw"
    if raw.is_dir():
        _unpack_mnist_gz(raw)
    if download:
        try:
            MNIST(str(root), train=True, download=True)
        except Exception as exc:  # network errors, 503s, checksum failures
            raise DatasetMissingError(_mnist_missing_message(root, f"The download failed: {short(exc)}\n")) from None
    if not all((raw / f).is_file() for f in MNIST_FILES):
        raise DatasetMissingError(_mnist_missing_message(root))
    try:
        ds = MNIST(str(root), train=split == "train", download=False)
        images, labels = ds.data, ds.targets
        if images.dim() != 3 or labels.dim() != 1 or len(images) != len(labels):
            raise ValueError(f"{len(images)} images of shape {tuple(images.shape[1:])} for {len(labels)} labels")
    except Exception as exc:  # a truncated or wrong IDX file: torchvision raises whatever its parser meets
        prefix = "train" if split == "train" else "t10k"
        names = ", ".join(f for f in MNIST_FILES if f.startswith(prefix))
        raise ValueError(
            f"mnist: the IDX files {names} in {raw.resolve()} cannot be read ({short(exc)}): truncated or not "
            "MNIST's. Delete them and fetch them again (--download), or copy good ones there."
        ) from None
    images = F.pad(images[:, None], (2, 2, 2, 2))  # 28x28 -> 32x32, zero border
    return images, labels.to(torch.int64)
