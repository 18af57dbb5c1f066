"""ccloss.readers.cars196: Stanford Cars in torchvision's layout (devkit .mat files + JPEGs), cached at 256x256."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ccloss.data import DatasetMissingError, load_tensors
from ccloss.readers import cars196 as cars_reader

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

    # The cache is reused: decoding again would fail.
    def no_decode(*args, **kwargs):
        raise AssertionError("decoded images although the cache is valid")

    monkeypatch.setattr(cars_reader, "_decode", no_decode)
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


def test_cars196_download_explains_unavailable(tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        load_tensors("cars196", "test", root=tmp_path, download=True)
    msg = str(err.value)
    assert "unavailable" in msg and "torchvision" in msg and "Kaggle" in msg
    assert str((tmp_path / "stanford_cars").resolve()) in msg


def test_cars196_unwritable_cache_warns_and_still_loads(tmp_path, monkeypatch):
    _write_cars(tmp_path)

    def full_disk(obj, path):
        Path(path).write_bytes(b"partial")  # a half-written temporary file, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.warns(UserWarning, match="could not write the cache .*No space left"):
        x, y = load_tensors("cars196", "test", root=tmp_path)
    assert x.shape == (2, 3, 256, 256) and y.tolist() == [1, 4]
    assert sorted(p.name for p in (tmp_path / "stanford_cars").iterdir()) == [
        "cars_test",
        "cars_test_annos_withlabels.mat",
        "cars_train",
        "devkit",
    ]  # neither a cache nor a temporary file is left behind
