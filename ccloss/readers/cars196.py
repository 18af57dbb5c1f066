"""Stanford Cars (Cars-196) from torchvision's StanfordCars layout, placed by hand, cached at 256x256."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..runtime.atomic import save_torch
from .common import DatasetMissingError, short

__all__ = ["load_cars196", "CARS_CACHE_VERSION"]

CARS_CACHE_VERSION = 1


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


def load_cars196(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
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
            f"{needed[0]}: {short(exc)}. Replace them with the devkit files "
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
            f"annotations are missing, e.g. {missing[0]}.\n" + _cars_missing_message(root, split, download)
        )
    images = torch.empty(len(samples), 3, 256, 256, dtype=torch.uint8)  # ~1.6 GB for 8,144

    def fill(i: int) -> None:
        images[i] = torch.from_numpy(_decode_car(samples[i][0])).permute(2, 0, 1)

    workers = max(1, min(16, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL releases the GIL while decoding
        list(pool.map(fill, range(len(samples))))

    save_torch(cache, {"version": CARS_CACHE_VERSION, "images": images, "labels": labels})
    return images, labels
