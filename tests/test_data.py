"""Tests for ccloss.data: datasets in their real on-disk formats, and the TensorLoader."""

from __future__ import annotations

import dataclasses
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ccloss import data
from ccloss.data import (
    DATASETS,
    DatasetMissingError,
    TensorLoader,
    dataset_info,
    load_tensors,
    read_class_names,
)

# --------------------------------------------------------------------------------------------
# DatasetInfo
# --------------------------------------------------------------------------------------------


def test_dataset_infos():
    assert set(DATASETS) == {"digits", "mnist5k", "mnist", "cifar100", "cars196"}
    sizes = {
        n: (i.image_size, i.stored_size, i.in_channels, i.num_classes) for n, i in DATASETS.items()
    }
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


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


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


def test_digits_mean_std_constants():
    x, _ = load_tensors("digits", "train")
    v = x.double() / 255
    info = dataset_info("digits")
    assert abs(v.mean().item() - info.mean[0]) < 1e-4
    assert abs(v.std(unbiased=False).item() - info.std[0]) < 1e-4


# --------------------------------------------------------------------------------------------
# MNIST (IDX files)
# --------------------------------------------------------------------------------------------


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
    if gz:
        assert (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


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


# --------------------------------------------------------------------------------------------
# CIFAR-100 (python pickles)
# --------------------------------------------------------------------------------------------


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
    names = read_class_names("cifar100", tmp_path)
    assert names[0] == "class_000" and len(names) == 100
    assert read_class_names("cifar100", tmp_path / "elsewhere") == DATASETS["cifar100"].class_names


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


# --------------------------------------------------------------------------------------------
# Cars-196 (torchvision StanfordCars layout: devkit .mat files + JPEGs)
# --------------------------------------------------------------------------------------------

_ANNO_DTYPE = [(f, "O") for f in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]


def _write_annos(path: Path, rows: list[tuple[int, str]]):
    import scipy.io

    arr = np.array([(1, 1, 9, 9, cls, fname) for cls, fname in rows], dtype=_ANNO_DTYPE)
    scipy.io.savemat(str(path), {"annotations": arr})


def _write_cars(root: Path):
    import scipy.io
    from PIL import Image

    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    names = np.array([f"Make Model {i}" for i in range(196)], dtype=object)
    scipy.io.savemat(str(base / "devkit" / "cars_meta.mat"), {"class_names": names})
    ref = {}
    specs = {  # (1-based class, size, mode, colour)
        "train": [
            (3, (40, 30), "RGB", (200, 30, 60)),
            (1, (25, 50), "L", 128),
            (196, (64, 64), "RGB", (10, 240, 90)),
        ],
        "test": [(2, (33, 21), "RGB", (90, 90, 250)), (5, (48, 36), "RGB", (250, 250, 0))],
    }
    for split, items in specs.items():
        folder = base / f"cars_{split}"
        folder.mkdir()
        rows = []
        for i, (cls, size, mode, colour) in enumerate(items):
            fname = f"{i + 1:05d}.jpg"
            Image.new(mode, size, colour).save(folder / fname, quality=95)
            rows.append((cls, fname))
        if split == "train":
            annos = base / "devkit" / "cars_train_annos.mat"
        else:
            annos = base / "cars_test_annos_withlabels.mat"
        _write_annos(annos, rows)
        ref[split] = items
    return ref


def test_cars196_layout_and_cache(tmp_path, monkeypatch):
    ref = _write_cars(tmp_path)
    base = tmp_path / "stanford_cars"
    for split in ("train", "test"):
        x, y = load_tensors("cars196", split, root=tmp_path)
        items = ref[split]
        assert x.shape == (len(items), 3, 256, 256) and x.dtype == torch.uint8
        assert y.tolist() == [cls - 1 for cls, *_ in items]  # 1-based -> 0-based
        for img, (_, _, mode, colour) in zip(x, items):
            rgb = (colour,) * 3 if mode == "L" else colour
            mean_rgb = img.float().mean((1, 2))
            assert torch.allclose(mean_rgb, torch.tensor(rgb, dtype=torch.float32), atol=4)
        assert (base / f"ccloss_cache_{split}_256.pt").is_file()
    assert not list(base.glob("*.tmp"))  # atomic write left no temp file
    assert read_class_names("cars196", tmp_path)[:2] == ("Make Model 0", "Make Model 1")

    # The cache is reused: decoding again would fail.
    def no_decode(*args, **kwargs):
        raise AssertionError("decoded images although the cache is valid")

    monkeypatch.setattr(data, "_decode_car", no_decode)
    x2, y2 = load_tensors("cars196", "train", root=tmp_path)
    assert x2.shape == (3, 3, 256, 256) and y2.tolist() == [2, 0, 195]
    monkeypatch.undo()

    # More images in the annotations: the cache is rebuilt.
    from PIL import Image

    Image.new("RGB", (30, 30), (0, 0, 0)).save(base / "cars_train" / "00004.jpg")
    rows = [(cls, f"{i + 1:05d}.jpg") for i, (cls, *_) in enumerate(ref["train"])]
    rows.append((7, "00004.jpg"))
    _write_annos(base / "devkit" / "cars_train_annos.mat", rows)
    x3, y3 = load_tensors("cars196", "train", root=tmp_path)
    assert x3.shape == (4, 3, 256, 256) and y3.tolist() == [2, 0, 195, 6]
    assert torch.equal(x3[:3], x2) and int(x3[3].max()) < 10
    blob = torch.load(base / "ccloss_cache_train_256.pt", weights_only=True)
    assert len(blob["labels"]) == 4


def test_cars196_missing_image_is_clear(tmp_path):
    _write_cars(tmp_path)
    (tmp_path / "stanford_cars" / "cars_test" / "00002.jpg").unlink()
    with pytest.raises(DatasetMissingError, match="1 of 2 images"):
        load_tensors("cars196", "test", root=tmp_path)


# --------------------------------------------------------------------------------------------
# Missing datasets
# --------------------------------------------------------------------------------------------


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


def test_cars196_download_explains_unavailable(tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        load_tensors("cars196", "test", root=tmp_path, download=True)
    msg = str(err.value)
    assert "unavailable" in msg and "torchvision" in msg and "Kaggle" in msg
    assert str((tmp_path / "stanford_cars").resolve()) in msg


# --------------------------------------------------------------------------------------------
# TensorLoader
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_train():
    return load_tensors("digits", "train")


def _collect(loader, epoch=None):
    if epoch is not None:
        loader.set_epoch(epoch)
    xs, ys = zip(*list(loader)) if len(loader) else ((), ())
    return list(xs), list(ys)


def _fake(n=100, c=3, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=g), torch.arange(n)


def test_loader_batches_and_drop_last(digits_train):
    x, y = digits_train
    info = dataset_info("digits")
    train = TensorLoader(x, y, 32, train=True, info=info)
    assert len(train) == 1347 // 32 == 42
    xs, ys = _collect(train)
    assert len(xs) == 42
    assert all(b.shape == (32, 1, 32, 32) and b.dtype == torch.float32 for b in xs)
    assert all(b.shape == (32,) and b.dtype == torch.int64 for b in ys)

    test = TensorLoader(x, y, 32, train=False, info=info)
    assert len(test) == 43
    xs, ys = _collect(test)
    assert [len(b) for b in ys] == [32] * 42 + [3]
    assert torch.equal(torch.cat(ys), y)  # test: no shuffle

    partial = TensorLoader(x, y, 32, train=True, info=info, drop_last=False)
    assert len(partial) == 43 and len(_collect(partial)[1][-1]) == 3
    with pytest.raises(ValueError, match="no full batch"):
        TensorLoader(x[:10], y[:10], 32, train=True, info=info)


def test_loader_visits_every_index_once():
    x, y = _fake(103)
    info = dataset_info("cifar100")
    loader = TensorLoader(x, y, 10, train=True, info=info, drop_last=False)
    for epoch in range(3):
        ys = torch.cat(_collect(loader, epoch)[1])
        assert torch.equal(ys.sort().values, torch.arange(103))
    dropped = torch.cat(_collect(TensorLoader(x, y, 10, train=True, info=info), 0)[1])
    assert len(dropped) == 100 and len(set(dropped.tolist())) == 100


def test_loader_determinism_and_epochs():
    x, y = _fake(64)
    info = dataset_info("cifar100")
    make = lambda seed=0: TensorLoader(x, y, 16, train=True, info=info, seed=seed)  # noqa: E731
    a = make()
    for epoch in range(3):  # a long-running loader ...
        xa, ya = _collect(a, epoch)
    b = make()  # ... and a fresh one resumed at epoch 2 give identical batches
    xb, yb = _collect(b, 2)
    assert all(torch.equal(p, q) for p, q in zip(xa + ya, xb + yb))
    x0, y0 = _collect(make(), 0)
    assert not torch.equal(torch.cat(y0), torch.cat(yb))  # different epoch, different order
    _, ys1 = _collect(make(seed=1), 2)
    assert not torch.equal(torch.cat(ys1), torch.cat(yb))  # different seed, different order
    assert not torch.equal(xa[0], x0[0])


@pytest.mark.parametrize("drop_last", [True, False])
def test_loader_ddp_sharding(drop_last):
    x, y = _fake(101)
    info = dataset_info("cifar100")
    b = 8
    single = TensorLoader(x, y, 2 * b, train=True, info=info, seed=3, drop_last=drop_last)
    ranks = [
        TensorLoader(
            x, y, b, train=True, info=info, seed=3, drop_last=drop_last, rank=r, world_size=2
        )
        for r in range(2)
    ]
    assert len(ranks[0]) == len(ranks[1]) == len(single) == (6 if drop_last else 7)
    sx, sy = _collect(single, 5)
    (x0, y0), (x1, y1) = (_collect(r, 5) for r in ranks)
    for i in range(len(single)):
        assert torch.equal(torch.cat([y0[i], y1[i]]), sy[i])
        assert torch.equal(torch.cat([x0[i], x1[i]]), sx[i])  # same augmentation too
        assert abs(len(y0[i]) - len(y1[i])) <= 1
    if drop_last:
        assert all(len(t) == b for t in y0 + y1)
    else:
        assert [len(y0[-1]), len(y1[-1])] == [2, 3]  # last global batch of 5 split evenly


def _reference(images, plan, positions, info, augment, out):
    """Slow per-sample reference: pad, crop at the plan's offsets, flip, normalise."""
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    result = []
    for p in positions:
        img = images[plan.order[p]].float()
        if augment == "crop_flip":
            img = F.pad(img, (4, 4, 4, 4))
        t, l = int(plan.top[p]), int(plan.left[p])
        img = img[:, t : t + out, l : l + out]
        if plan.flip[p]:
            img = img.flip(-1)
        result.append((img / 255 - mean) / std)
    return torch.stack(result)


@pytest.mark.parametrize("name", ["cifar100", "cars196"])
def test_augmentation_matches_reference(name):
    info = dataset_info(name)
    x, y = _fake(40 if name == "cifar100" else 12, s=info.stored_size, seed=4)
    bs = 8 if name == "cifar100" else 4
    loader = TensorLoader(x, y, bs, train=True, info=info, seed=7)
    loader.set_epoch(2)
    plan = loader.epoch_plan()
    assert int(plan.top.max()) <= (8 if name == "cifar100" else 32)
    offsets = set(zip(plan.top.tolist(), plan.left.tolist()))
    assert len(offsets) > len(x) // 2  # per-sample offsets
    for i, (xb, yb) in enumerate(loader):
        positions = range(i * bs, (i + 1) * bs)
        assert torch.equal(yb, plan.order[i * bs : (i + 1) * bs])
        ref = _reference(x, plan, positions, info, info.augment, info.image_size)
        assert xb.shape == (bs, 3, info.image_size, info.image_size)
        torch.testing.assert_close(xb, ref, atol=1e-5, rtol=1e-5)


def test_flip_differs_per_sample():
    # Only flips are random here (stored size == image size, no padding): a batch of one
    # asymmetric image must come out both mirrored and not mirrored.
    info = dataclasses.replace(dataset_info("cifar100"), augment="crop_flip_nopad")
    img = torch.arange(32, dtype=torch.uint8).mul(7).expand(3, 32, 32)  # left-right ramp
    x = img.expand(64, 3, 32, 32).contiguous()
    loader = TensorLoader(x, torch.zeros(64, dtype=torch.int64), 32, train=True, info=info)
    plain = TensorLoader(x[:1], torch.zeros(1, dtype=torch.int64), 1, train=False, info=info)
    ref = next(iter(plain))[0][0]
    n_flipped = 0
    for xb, _ in loader:
        flipped = torch.tensor([torch.equal(s, ref.flip(-1)) for s in xb])
        same = torch.tensor([torch.equal(s, ref) for s in xb])
        assert torch.all(flipped ^ same)
        assert flipped.any() and same.any()  # within one batch
        n_flipped += int(flipped.sum())
    assert 16 <= n_flipped <= 48


def test_test_loader_centre_crop_and_normalisation():
    info = dataset_info("cars196")
    x, y = _fake(5, s=256, seed=2)
    loader = TensorLoader(x, y, 4, train=False, info=info)
    assert loader.augment == "none"
    xs, ys = _collect(loader)
    assert [len(b) for b in ys] == [4, 1]
    out = torch.cat(xs)
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    expected = (x[:, :, 16:240, 16:240].float() / 255 - mean) / std
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # the same on a 32x32 dataset: no crop at all, for any epoch
    info = dataset_info("cifar100")
    x, y = _fake(10)
    loader = TensorLoader(x, y, 10, train=False, info=info)
    for epoch in (0, 9):
        xb = _collect(loader, epoch)[0][0]
        std = torch.tensor(info.std).view(1, 3, 1, 1)
        recovered = (xb * std + torch.tensor(info.mean).view(1, 3, 1, 1)) * 255
        torch.testing.assert_close(recovered, x.float(), atol=1e-3, rtol=0)


def test_loader_options_and_bad_inputs(digits_train):
    x, y = digits_train
    info = dataset_info("digits")
    loader = TensorLoader(x, y, 32, train=True, info=info, channels_last=True)
    xb, _ = next(iter(loader))
    assert xb.is_contiguous(memory_format=torch.channels_last)
    assert TensorLoader(x, y, 32, train=True, info=info, augment="none").augment == "none"
    assert TensorLoader(x, y, 32, train=True, info=info, augment="crop_flip").augment == "crop_flip"
    cifar = dataset_info("cifar100")
    xc, yc = _fake(20)
    assert TensorLoader(xc, yc, 4, train=True, info=cifar, augment="none").augment == "none"
    assert TensorLoader(xc, yc, 4, train=False, info=cifar).augment == "none"
    with pytest.raises(ValueError, match="augment"):
        TensorLoader(x, y, 32, train=True, info=info, augment="mixup")
    with pytest.raises(ValueError, match="rank"):
        TensorLoader(x, y, 32, train=True, info=info, rank=2, world_size=2)
    with pytest.raises(ValueError, match="channels"):
        TensorLoader(x, y, 32, train=True, info=cifar)
    with pytest.raises(ValueError, match="uint8"):
        TensorLoader(x.float(), y, 32, train=True, info=info)
    with pytest.raises(ValueError, match="too small"):
        TensorLoader(xc, yc, 4, train=True, info=dataset_info("cars196"))
