"""Stanford Cars (Cars-196) in torchvision's StanfordCars layout, placed by hand, cached at 256x256."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from . import DatasetMissingError, require, short

__all__ = ["load_cars196"]

CACHE_VERSION = 1
_DEVKIT_URL = "https://github.com/pytorch/vision/files/11644847/car_devkit.tgz"
_ISSUE_URL = "https://github.com/pytorch/vision/issues/7545"


def _missing_message(root: Path, split: str, download: bool) -> str:
    base = root.resolve() / "stanford_cars"
    head = "Automatic download of Cars-196 is unavailable (the Stanford host is gone; torchvision disabled it).\n"
    return (
        f"{head if download else ''}Dataset 'cars196' ({split} split) not found. Expected (torchvision StanfordCars):\n"
        f"    {base}/devkit/cars_meta.mat\n    {base}/devkit/cars_train_annos.mat\n"
        f"    {base}/cars_test_annos_withlabels.mat\n    {base}/cars_train/*.jpg and {base}/cars_test/*.jpg\n"
        f"To get it by hand: 1. the images of the Kaggle dataset 'jessicali9530/stanford-cars-dataset' (or a Hugging "
        f"Face mirror keeping the file names), moved out of their nested folders; 2. car_devkit.tgz ({_DEVKIT_URL}) "
        f"unpacked to {base}/devkit/; 3. cars_test_annos_withlabels.mat ({_ISSUE_URL}) in {base}/. The first load "
        f"writes a 256x256 cache. Use --data-dir to point at a different data folder."
    )


def _decode(paths: list[str], size: int = 256) -> torch.Tensor:
    """The images at ``paths`` as uint8 N x 3 x size x size, bilinear-resized, decoded in threads."""
    from PIL import Image

    images = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)  # ~1.6 GB for the 8,144 train images

    def fill(i: int) -> None:
        with Image.open(paths[i]) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale that is still >= size
            rgb = np.array(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
        images[i] = torch.from_numpy(rgb).permute(2, 0, 1)

    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:  # PIL releases the GIL
        list(pool.map(fill, range(len(paths))))
    return images


def load_cars196(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8,144 train or 8,041 test images at 256x256, from the cache while it matches the annotations."""
    base = root / "stanford_cars"
    annos = base / "devkit" / "cars_train_annos.mat" if split == "train" else base / "cars_test_annos_withlabels.mat"
    if not (annos.is_file() and (base / "devkit" / "cars_meta.mat").is_file() and (base / f"cars_{split}").is_dir()):
        raise DatasetMissingError(_missing_message(root, split, download))
    require("scipy", "cars196", "scipy")  # torchvision reads the .mat files with scipy.io
    from torchvision.datasets import StanfordCars

    try:  # loader=str: ds[i] is (image path, 0-based label)
        ds = StanfordCars(str(root), split=split, download=False, loader=str)
        pairs = [ds[i] for i in range(len(ds))]
    except Exception as exc:
        raise ValueError(
            f"cars196 ({split}): could not read the annotations {annos} or {base}/devkit/cars_meta.mat: "
            f"{short(exc)}. Replace them with the devkit files ({_DEVKIT_URL}, {_ISSUE_URL})."
        ) from None
    paths, labels = [p for p, _ in pairs], torch.tensor([int(t) for _, t in pairs], dtype=torch.int64)
    cache = base / f"ccloss_cache_{split}_256.pt"
    try:  # valid while it matches the annotations (same count, same labels in the same order)
        blob = torch.load(cache, map_location="cpu", weights_only=True)
        if blob.get("version") == CACHE_VERSION and torch.equal(blob["labels"], labels):
            return blob["images"], blob["labels"]
    except Exception:  # absent, unreadable or stale: rebuilt below
        pass
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        head = f"cars196 ({split}): {len(missing)} of {len(paths)} images named in the annotations are missing"
        raise DatasetMissingError(f"{head}, e.g. {missing[0]}.\n" + _missing_message(root, split, download))
    images, tmp = _decode(paths), cache.with_name(f".{cache.name}.tmp")
    try:  # written whole, then renamed: a reader never sees half a cache
        torch.save({"version": CACHE_VERSION, "images": images, "labels": labels}, tmp)
        os.replace(tmp, cache)
    except OSError as exc:  # a read-only or full data folder: decoded again next time
        warnings.warn(f"cars196: could not write the cache {cache}: {short(exc)}", stacklevel=2)
    finally:
        tmp.unlink(missing_ok=True)
    return images, labels
