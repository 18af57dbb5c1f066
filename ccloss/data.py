"""Datasets by name: ``load_tensors(name, split, root)`` is ``(images uint8 N x C x S x S, labels int64 N)``,
:func:`loaders_for` a run's two loaders. ``digits`` and ``mnist5k`` are embedded (``pip install 'ccloss[data]'``),
``mnist`` and ``cifar100`` downloaded, ``cars196`` placed by hand; ``val`` is a fixed stratified part of ``train``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .loader import AUGMENTS, TensorLoader
from .readers import DatasetMissingError, cars196, cifar100, embedded, mnist, stratified_split

__all__ = ["DATASETS", "SPLITS", "AUGMENTS", "DatasetInfo", "DatasetMissingError", "TensorLoader", "dataset_info",
           "load_tensors", "loaders_for", "val_indices"]  # fmt: skip

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset: sizes, normalisation, suggested stem and augmentation."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int  # size fed to the model
    stored_size: int  # size of the uint8 tensors load_tensors returns
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale
    std: tuple[float, ...]
    stem: str  # "cifar" (32x32 inputs) or "imagenet" (224x224 inputs)
    augment: str  # one of AUGMENTS, used for the train split
    class_names: tuple[str, ...] | None  # None: unnamed (cars196: see devkit/cars_meta.mat)
    val_fraction: float = 0.2  # share of each class of ``train`` held out as ``val``


# Alphabetical, as in the official ``cifar-100-python/meta`` file (``fine_label_names``).
_CIFAR100_WORDS = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
)
_CIFAR100_CLASSES = tuple(_CIFAR100_WORDS.split())
# The three grey 32x32 digit sets share everything but their name, mean and std.
_DIGITS = dict(num_classes=10, in_channels=1, image_size=32, stored_size=32, stem="cifar", augment="none",
               class_names=tuple("0123456789"))  # fmt: skip

# fmt: off
DATASETS: dict[str, DatasetInfo] = {
    # Mean and population std of the train images after resizing to 32x32, on the [0, 1] scale:
    # load_tensors(name, "train")[0].double().div(255) -> .mean(), .std(unbiased=False) (tests/test_data.py).
    "digits": DatasetInfo("digits", mean=(0.3052,), std=(0.3236,), **_DIGITS),
    "mnist5k": DatasetInfo("mnist5k", mean=(0.1006,), std=(0.2757,), **_DIGITS),
    # The usual published constants; 5,000 of the 60,000 train images are val.
    "mnist": DatasetInfo("mnist", mean=(0.1307,), std=(0.3081,), **_DIGITS, val_fraction=1 / 12),
    "cifar100": DatasetInfo("cifar100", num_classes=100, in_channels=3, image_size=32, stored_size=32,
                            mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), stem="cifar",
                            augment="crop_flip", class_names=_CIFAR100_CLASSES, val_fraction=0.1),
    "cars196": DatasetInfo("cars196", num_classes=196, in_channels=3, image_size=224, stored_size=256,
                           mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), stem="imagenet",
                           augment="crop_flip_nopad", class_names=None, val_fraction=0.1),
}

#: How each dataset's train and test files are read: ``reader(root, "train" | "test", download)``.
_READERS = {"digits": embedded.load_digits, "mnist5k": embedded.load_mnist5k, "mnist": mnist.load_mnist,
            "cifar100": cifar100.load_cifar100, "cars196": cars196.load_cars196}
# fmt: on


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; unknown names raise ``ValueError``."""
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[name]


def load_tensors(
    name: str, split: str, root: str | os.PathLike = "data", download: bool = False, *, holdout_val: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as ``(images uint8 N x C x S x S, labels int64 N)``, S = ``stored_size``, from ``root`` (``--data-dir``);
    ``download=True``: MNIST and CIFAR-100 through torchvision. ``holdout_val=True``: ``train`` without ``val``."""
    info = dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if holdout_val and split != "train":
        raise ValueError(f"holdout_val=True applies to the train split only, got split={split!r}")
    source = "test" if split == "test" else "train"
    images, labels = _READERS[name](Path(root).expanduser(), source, download)
    _check_loaded(info, source, images, labels)
    if split == "val" or holdout_val:
        val, rest = stratified_split(labels, info.val_fraction, seed=0)
        images, labels = (images[val], labels[val]) if split == "val" else (images[rest], labels[rest])
    return images.contiguous(), labels.to(torch.int64).contiguous()


def _check_loaded(info: DatasetInfo, split: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    expected = (info.in_channels, info.stored_size, info.stored_size)
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != expected or labels.shape != images.shape[:1]:
        shapes = f"{images.dtype} images {tuple(images.shape)} and labels {tuple(labels.shape)}"
        raise ValueError(f"{info.name}/{split}: the files gave {shapes}, expected uint8 N x {expected} and N")
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < info.num_classes:
        span = f"{int(labels.min())}..{int(labels.max())}"
        raise ValueError(f"{info.name}/{split}: labels span {span}, expected 0..{info.num_classes - 1}")


def val_indices(train_labels: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of the ``val`` split inside ``train``: :func:`~ccloss.readers.stratified_split`, seed 0."""
    return stratified_split(train_labels, fraction, seed=0)[0]


def loaders_for(
    config, shard: tuple[int, int], device: torch.device, channels_last: bool
) -> tuple[TensorLoader, TensorLoader]:
    """The training and evaluation loaders of a config (``eval_split="val"``: training on ``train`` without ``val``)."""
    info, split = dataset_info(config.dataset), config.eval_split
    x, y = load_tensors(config.dataset, "train", config.data_dir, config.download, holdout_val=split == "val")
    train = TensorLoader(x, y, config.batch_size, train=True, info=info, device=device, seed=config.seed,
                         shard=shard, channels_last=channels_last)  # fmt: skip
    x, y = load_tensors(config.dataset, split, config.data_dir, False)
    return train, TensorLoader(x, y, 512, train=False, info=info, device=device, channels_last=channels_last)
