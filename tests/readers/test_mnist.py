"""ccloss.readers.mnist: MNIST from torchvision's IDX files (unpacked or .gz), zero-padded to 32x32."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ccloss.data import DatasetMissingError, load_tensors


def _idx_images(arr: np.ndarray) -> bytes:
    n, h, w = arr.shape
    return struct.pack(">IIII", 2051, n, h, w) + arr.astype(np.uint8).tobytes()


def _idx_labels(arr: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(arr)) + arr.astype(np.uint8).tobytes()


def _write_mnist(root: Path, gz: bool, n_train: int = 6, n_test: int = 4):
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        blobs = (("images-idx3", _idx_images(imgs)), ("labels-idx1", _idx_labels(labels)))
        for kind, blob in blobs:
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                with gzip.open(raw / f"{name}.gz", "wb") as f:
                    f.write(blob)
            else:
                (raw / name).write_bytes(blob)
        out["train" if prefix == "train" else "test"] = (imgs, labels)
    return out


@pytest.mark.parametrize("gz", [False, True], ids=["unpacked", "gz-only"])
def test_mnist_idx(tmp_path, gz):
    ref = _write_mnist(tmp_path, gz)
    for split in ("train", "test"):
        x, y = load_tensors("mnist", split, root=tmp_path)
        imgs, labels = ref[split]
        assert x.shape == (len(imgs), 1, 32, 32) and x.dtype == torch.uint8
        assert torch.equal(x[:, 0, 2:30, 2:30], torch.from_numpy(imgs))
        border = x.clone()
        border[:, :, 2:30, 2:30] = 0
        assert int(border.sum()) == 0  # zero padding of 2
        assert y.dtype == torch.int64 and y.tolist() == labels.tolist()
    files = sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir())
    assert all(name.endswith(".gz") for name in files) == gz and len(files) == 4  # read as found, nothing written


def test_mnist_download_when_present_is_noop(tmp_path):
    _write_mnist(tmp_path, gz=True)
    x, _ = load_tensors("mnist", "test", root=tmp_path, download=True)
    assert x.shape == (4, 1, 32, 32)


def test_mnist_download_failure_is_clear(tmp_path, monkeypatch):
    import torchvision.datasets

    def fail(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: 503 Service Unavailable")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fail)
    with pytest.raises(DatasetMissingError) as err:
        load_tensors("mnist", "train", root=tmp_path, download=True)
    msg = str(err.value)
    assert "download failed" in msg and "503" in msg and str(tmp_path.resolve()) in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__


@pytest.mark.parametrize(
    "damage",
    [
        lambda blob: blob[:-1],  # truncated
        lambda blob: b"\x00\x00\x0d\x03" + blob[4:],  # float32 IDX, not uint8
        lambda blob: gzip.compress(blob)[:-8],  # a .gz cut short
    ],
    ids=["truncated", "wrong-type", "bad-gz"],
)
def test_mnist_damaged_idx_is_a_clear_error(tmp_path, damage):
    _write_mnist(tmp_path, gz=False)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    damaged = damage(path.read_bytes())
    if damaged[:2] == b"\x1f\x8b":  # gzip magic: replace the file by a broken .gz
        path.unlink()
        path = path.with_name(path.name + ".gz")
    path.write_bytes(damaged)
    with pytest.raises(ValueError, match=r"t10k-\*-ubyte .* cannot be read .*--download"):
        load_tensors("mnist", "test", root=tmp_path)
    assert load_tensors("mnist", "train", root=tmp_path)[0].shape == (6, 1, 32, 32)  # the train files are fine


def test_mnist_labels_out_of_range_are_refused(tmp_path):
    _write_mnist(tmp_path, gz=False)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(_idx_labels(np.array([0, 1, 10, 2])))
    with pytest.raises(ValueError, match=r"mnist/test: labels span 0\.\.10, expected 0\.\.9"):
        load_tensors("mnist", "test", root=tmp_path)
