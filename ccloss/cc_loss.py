r"""CC-Loss (Song et al., "Channel Correlation Loss for Image Classification", ICPR 2020, arXiv:2010.05469).

The paper released no code; :func:`cc_ratio` is its loss as reconstructed (docs/paper_choices.md)::

    D_ij = ||a_i - a_j||^2 (Gram form, one matmul);  d_intra, d_inter = mean D_ij over same-class pairs i != j
    (0 without one) and over different-class pairs;  CC = d_intra / (d_inter + eps * d_all)

eps is relative to d_all, the batch's mean distance over all pairs (detached, + 1e-12), so rescaling the
attention's spread leaves the loss unchanged (``relative_eps=False``: the paper's fixed eps). The default form is
the class-pair ``pair_ratio`` (:mod:`ccloss.cc_forms`, docs/study_cc_default.md); ``form="ratio"``: the paper's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from .cc_forms import PAIR_FORMS, SAMPLE_FORMS, group_ids, group_sums, pair_form_values, sample_form_values
from .options import build, option, signature

__all__ = ["FORMS", "NORMALIZATIONS", "CCOptions", "CCStats", "CCLoss", "cc_ratio", "cc_statistics"]
__all__ += ["check_attention_labels", "compute_dtype", "normalize_attention", "pairwise_distances"]

FORMS = SAMPLE_FORMS + PAIR_FORMS  #: the sample-pair forms (the paper's ``ratio`` first), then the class-pair forms
NORMALIZATIONS = ("none", "unit", "standardize")  #: of the attention before the distances (:func:`normalize_attention`)
EPS_FLOOR = 1e-12  #: the absolute floor of every denominator: identical vectors give 0 / 1e-12 = 0, not 0 / 0


# fmt: off
@dataclass(frozen=True)
class CCOptions:
    """CC-Loss's options, written once: CCLoss, cc_statistics, the "cc" criterion, TrainConfig, the CLI."""

    form: str = option("pair_ratio", "CC-Loss form (pair_ratio: the default; ratio: the paper's)", choices=FORMS)
    squared: bool = option(True, "squared Euclidean distances (False: plain ones, safe gradient at 0)")
    eps: float = option(1e-3, "added to the denominators, times d_all", must="a finite number >= 0",
                        test=lambda v: v >= 0)
    relative_eps: bool = option(True, "eps times the batch's mean distance d_all (False: a fixed eps, as published)")
    group_size: int | None = option(None, "take the CC statistic over groups of this many samples (default: the "
                                    "whole batch)", must="None (the whole batch) or an integer >= 2 (a group "
                                    "needs a pair)", test=lambda v: v >= 2)
    normalize: str = option("none", "the attention before the distances", choices=NORMALIZATIONS)
    tau: float = option(0.1, "temperature of pair_softmax", must="a finite number > 0", test=lambda v: v > 0)
# fmt: on


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays; all else is float32 (a Gram matrix in bf16 is badly wrong: docs/paper_choices.md)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with a zero (finite) gradient at 0: the 'double where' trick (NaN stays NaN)."""
    zero = x == 0
    return torch.where(zero, torch.zeros_like(x), torch.sqrt(torch.where(zero, torch.ones_like(x), x)))


def pairwise_distances(attention: torch.Tensor, squared: bool = True) -> torch.Tensor:
    """B x B D = n 1^T + 1 n^T - 2 A A^T (n_i = ||a_i||^2) of the centred A, clamped at 0, zero diagonal, float32
    (float64 stays) even under autocast. ``squared=False``: sqrt(D), with a finite gradient at 0."""
    if attention.dim() != 2:
        raise ValueError(f"attention must be a 2-D B x C tensor, got shape {tuple(attention.shape)}")
    with torch.autocast(device_type=attention.device.type, enabled=False):
        a = attention.to(compute_dtype(attention))
        a = a - a.mean(dim=0, keepdim=True)
        gram = a @ a.T
        norms = gram.diagonal()
        dist = (norms[:, None] + norms[None, :] - 2.0 * gram).clamp_min(0.0)
        dist = 0.5 * (dist + dist.T)  # exactly symmetric despite rounding in the matmul
        dist = dist.masked_fill(torch.eye(a.shape[0], dtype=torch.bool, device=a.device), 0.0)
        return dist if squared else _safe_sqrt(dist)


def cc_ratio(attention: torch.Tensor, labels: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The paper's CC-Loss, d_intra / (d_inter + eps * d_all + 1e-12): ``cc_statistics(form="ratio")``, short."""
    check_attention_labels(attention, labels)
    dist = pairwise_distances(attention)
    labels = labels.to(dist.device)
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=dist.device)
    zero = dist.sum() * 0.0  # a batch without some kind of pair: 0, still in the graph

    def mean(values: torch.Tensor) -> torch.Tensor:
        return values.mean() if values.numel() else zero

    d_intra, d_inter, d_all = mean(dist[same & off_diagonal]), mean(dist[~same]), mean(dist[off_diagonal])
    return d_intra / (d_inter + eps * d_all.detach() + EPS_FLOOR)


@dataclass
class CCStats:
    """Everything CC-Loss computes on one batch (for the loss, logging and figures)."""

    loss: torch.Tensor  #: scalar loss (mean of the per-group values)
    d_intra: torch.Tensor  #: scalar, mean same-class distance (averaged over groups)
    d_inter: torch.Tensor  #: scalar, mean different-class distance (averaged over groups)
    distances: torch.Tensor  #: B x B pairwise distance matrix (squared unless squared=False)
    group_values: torch.Tensor  #: per-group loss values (one entry without group_size)


def normalize_attention(attention: torch.Tensor, how: str = "none") -> torch.Tensor:
    """The attention as the distances see them (float32 / float64): ``none`` A; ``unit`` a_i / ||a_i|| (a zero
    vector stays 0); ``standardize`` (a_i - m) / s, m the batch mean, s^2 = mean_i ||a_i - m||^2 + 1e-12."""
    if how not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {how!r}; valid: {', '.join(NORMALIZATIONS)}")
    with torch.autocast(device_type=attention.device.type, enabled=False):
        a = attention.to(compute_dtype(attention))
        if how == "unit":  # a zero vector stays 0, with a finite gradient (safe sqrt, no division by 0)
            norm = _safe_sqrt(a.pow(2).sum(dim=1, keepdim=True))
            return a / torch.where(norm > 0, norm, torch.ones_like(norm))
        if how == "standardize":
            centred = a - a.mean(dim=0, keepdim=True)
            return centred / torch.sqrt(centred.pow(2).sum(dim=1).mean() + EPS_FLOOR)
        return a


def cc_statistics(attention: torch.Tensor, labels: torch.Tensor, **options) -> CCStats:
    """CC-Loss of attention A (B x C), labels (B) and :class:`CCOptions`' ``options``: the mean over groups with a pair
    (``group_size=g``: samples [0, g), [g, 2g), ...), each with its own d_all; d_intra / d_inter: sample-pair means."""
    check_attention_labels(attention, labels)
    o = build(CCOptions, options, "CC-Loss")
    dist = pairwise_distances(normalize_attention(attention, o.normalize), squared=o.squared)
    labels = labels.to(dist.device)
    group_id, n_groups = group_ids(dist.shape[0], o.group_size, dist.device)
    sums, counts = group_sums(dist, labels, group_id, n_groups)
    d_intra, d_inter = sums[0] / counts[0].clamp_min(1.0), sums[1] / counts[1].clamp_min(1.0)
    d_all = (sums[0] + sums[1]) / (counts[0] + counts[1]).clamp_min(1.0)
    floor = o.eps * d_all.detach() + EPS_FLOOR if o.relative_eps else torch.full_like(d_all, o.eps)
    if o.form in PAIR_FORMS:
        values = pair_form_values(o.form, dist, labels, group_id, n_groups, floor, o.tau)
    else:
        values = sample_form_values(o.form, sums, (d_intra, d_inter), floor)
    # known on the host (no sync): only a trailing group of one has no pair
    n = dist.shape[0]
    with_pairs = n_groups - (n - (n_groups - 1) * (o.group_size or n) < 2)
    zero = None if with_pairs else dist.sum() * 0.0  # one sample, no pair: a zero loss that stays in the graph
    means = [v[:with_pairs].mean() if with_pairs else zero for v in (values, d_intra, d_inter)]
    return CCStats(loss=means[0], d_intra=means[1], d_inter=means[2], distances=dist, group_values=values)


class CCLoss(nn.Module):
    """``CCLoss(**options)`` (:class:`CCOptions`); ``CCLoss()(attention, labels)`` is the scalar loss, ``.statistics``
    a :class:`CCStats`. ``gather``: ``(attention, labels) -> (attention, labels)`` applied first (under DDP)."""

    def __init__(self, **options) -> None:
        super().__init__()
        for name, value in asdict(build(CCOptions, options, "CC-Loss")).items():
            setattr(self, name, value)
        self.gather: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None

    options = property(lambda self: {f.name: getattr(self, f.name) for f in fields(CCOptions)})  #: as a dict

    def statistics(self, attention: torch.Tensor, labels: torch.Tensor) -> CCStats:
        if self.gather is not None:
            attention, labels = self.gather(attention, labels)
        return cc_statistics(attention, labels, **self.options)

    def forward(self, attention: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.statistics(attention, labels).loss

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


CCLoss.__signature__ = signature(CCOptions)
cc_statistics.__signature__ = signature(CCOptions, "attention", "labels")


def check_attention_labels(attention: torch.Tensor, labels: torch.Tensor) -> None:
    """A ValueError saying what is wrong unless attention is a non-empty float B x C and labels B integers."""
    if not isinstance(attention, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError("CC-Loss takes two tensors: attention (B x C) and labels (B)")
    if attention.dim() != 2:
        shape = tuple(attention.shape)
        raise ValueError(f"attention must be a 2-D B x C tensor, got shape {shape}; flatten or pool the map first")
    if not attention.is_floating_point():
        raise ValueError(f"attention must be a floating-point tensor, got {attention.dtype}")
    if attention.shape[0] == 0:
        raise ValueError("attention is empty: CC-Loss needs a batch of at least one sample")
    if labels.dim() != 1:
        raise ValueError(f"labels must be a 1-D tensor of class indices, got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}; use labels.long()")
    if len(labels) != len(attention):
        raise ValueError(f"label count ({len(labels)}) does not match the attention vectors ({len(attention)})")
