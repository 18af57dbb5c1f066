"""The CC-Loss paper's reported numbers (top-1 accuracy, %), to show beside ours.

Song, Chang, Ma, Li, Tan. "CC-Loss: Channel Correlation Loss for Image Classification".
ICPR 2020, pp. 7601-7608, arXiv:2010.05469. The CSV files in ``experiments/paper_tables/``
are transcribed from its tables (see the README there).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ccloss.losses import PAPER_NAMES

__all__ = ["PAPER_TABLES", "paper_table", "paper_dataset_name", "paper_backbone_name", "paper_accuracy"]

PAPER_TABLES = {
    "losses": "table1_losses.csv",
    "cam": "table2_cam.csv",
    "lambda": "table3_lambda.csv",
    "batch_size": "table4_batch_size.csv",
}
_DATASETS = {"mnist": "MNIST", "cifar100": "CIFAR-100", "cars196": "Cars-196"}
_BACKBONES = {"resnet18": "ResNet18", "vgg16": "VGG16"}


def paper_table(name: str) -> pd.DataFrame:
    """One of the paper's tables: ``losses``, ``cam``, ``lambda`` or ``batch_size``."""
    if name not in PAPER_TABLES:
        raise ValueError(f"unknown paper table {name!r}; valid: {', '.join(PAPER_TABLES)}")
    return pd.read_csv(Path(__file__).parent / "paper_tables" / PAPER_TABLES[name])


def paper_dataset_name(dataset: str) -> str | None:
    """The paper's name for one of our datasets (None for ``digits``, which the paper lacks)."""
    return _DATASETS.get(dataset)


def paper_backbone_name(backbone: str, cam: bool) -> str:
    return _BACKBONES[backbone] + ("+CAM" if cam else "")


def paper_accuracy(loss: str, backbone: str, dataset: str, cam: bool) -> tuple[float, float] | None:
    """(accuracy, std) the paper reports for this setting, or None where it reports nothing.

    Uses the CAM table for ``ce``/``cc`` (which has CE+CAM rows) and the main table otherwise.
    """
    name = paper_dataset_name(dataset)
    if name is None or loss not in PAPER_NAMES:
        return None
    table = paper_table("cam" if loss in ("ce", "cc") else "losses")
    rows = table[
        (table["loss"] == PAPER_NAMES[loss])
        & (table["backbone"] == paper_backbone_name(backbone, cam))
        & (table["dataset"] == name)
    ]
    if rows.empty or pd.isna(rows["accuracy"].iloc[0]):
        return None
    std = rows["std"].iloc[0]
    return float(rows["accuracy"].iloc[0]), (None if pd.isna(std) else float(std))
