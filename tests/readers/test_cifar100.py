"""ccloss.readers.cifar100: CIFAR-100 from the official python pickles."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ccloss.data import DatasetMissingError, load_tensors


def _write_cifar100(root: Path, n_train: int = 7, n_test: int = 5):
    rng = np.random.default_rng(1)
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        imgs = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 100, size=n).tolist()
        entry = {
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
            b"batch_label": f"{split} batch".encode(),
            b"fine_labels": labels,
            b"coarse_labels": [lab // 5 for lab in labels],
            b"data": imgs.reshape(n, 3072),  # R plane, G plane, B plane, row-major
        }
        with open(base / split, "wb") as f:
            pickle.dump(entry, f)
        out[split] = (imgs, labels)
    names = [f"class_{i:03d}".encode() for i in range(100)]
    with open(base / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": names, b"coarse_label_names": names[:20]}, f)
    return out


def test_cifar100_pickles(tmp_path):
    ref = _write_cifar100(tmp_path)
    for split in ("train", "test"):
        x, y = load_tensors("cifar100", split, root=tmp_path)
        imgs, labels = ref[split]
        assert x.dtype == torch.uint8 and x.shape == imgs.shape
        assert torch.equal(x, torch.from_numpy(imgs))
        assert y.dtype == torch.int64 and y.tolist() == labels


def test_cifar100_corrupt_file(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    (base / "test").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="CIFAR-100 python pickle"):
        load_tensors("cifar100", "test", root=tmp_path)


def test_cifar100_download_failure_is_clear(tmp_path, monkeypatch):
    import torchvision.datasets

    def fail(self):
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets.CIFAR100, "download", fail)
    with pytest.raises(DatasetMissingError, match="download failed"):
        load_tensors("cifar100", "train", root=tmp_path, download=True)
