"""Readers of each dataset's files, and what they share: the missing-dataset error, stratified picks."""

from __future__ import annotations

from importlib.util import find_spec

import torch

__all__ = ["DatasetMissingError", "require", "short", "stratified_split"]


class DatasetMissingError(FileNotFoundError):
    """The dataset's files (or the package that ships them) are missing; the message says how to get them."""


def require(module: str, dataset: str, package: str) -> None:
    """Raise :class:`DatasetMissingError` naming the extra to install when ``module`` is not installed."""
    try:
        found = find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing or blocked
        found = False
    if not found:
        extra = f"Install the datasets extra: pip install 'ccloss[data]' (or pip install {package})."
        raise DatasetMissingError(f"Dataset {dataset!r} needs the {package} package, which is not installed. {extra}")


def short(exc: BaseException, limit: int = 400) -> str:
    """An exception as one line of at most ``limit`` characters, for our own messages."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def stratified_split(labels: torch.Tensor, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(picked, rest)``: round(fraction n_k) (< n_k) seeded random indices of each class k, sorted; the others."""
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    labels, generator = torch.as_tensor(labels).to(torch.int64), torch.Generator().manual_seed(int(seed))
    chosen = [torch.zeros(0, dtype=torch.int64)]
    for cls in torch.unique(labels).tolist():
        members = (labels == cls).nonzero().flatten()
        take = min(round(float(fraction) * len(members)), len(members) - 1)
        chosen.append(members[torch.randperm(len(members), generator=generator)[:take]])
    picked = torch.sort(torch.cat(chosen)).values
    return picked, torch.ones(len(labels), dtype=torch.bool).index_fill_(0, picked, False).nonzero().flatten()
