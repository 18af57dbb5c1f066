"""What the dataset readers share: the missing-dataset error, short error texts, stratified picks."""

from __future__ import annotations

import torch

__all__ = ["DatasetMissingError", "short", "stratified_indices", "complement"]


class DatasetMissingError(FileNotFoundError):
    """The dataset's files are not where they should be; the message says how to get them."""


def short(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def complement(indices: torch.Tensor, n: int) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[indices] = False
    return keep.nonzero().flatten()
