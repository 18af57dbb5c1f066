r"""CC-Loss: the channel correlation loss on a mini-batch of channel-attention vectors.

Song et al., "CC-Loss: Channel Correlation Loss for Image Classification", ICPR 2020
(arXiv:2010.05469). The paper released no code; this is the reconstruction documented in
docs/paper_choices.md. Read :func:`cc_ratio` first, the definition in ten lines:

    D_ij    = ||a_i - a_j||^2                      (Gram form: n_i + n_j - 2 a_i.a_j, one matmul)
    d_intra = mean of D_ij over same-class pairs i != j      (0 without such a pair)
    d_inter = mean of D_ij over different-class pairs
    CC      = d_intra / (d_inter + eps)

and the training objective is CE + lambda * CC (:mod:`ccloss.losses.cc`). Below it come the
variants the study and the ablations compare (:func:`cc_statistics`): other ``form``\ s, a
``normalize``\ d geometry, and ``group_size``, the statistic over consecutive groups of samples,
which decouples the paper's batch of 32 from the optimiser batch. :class:`CCLoss` wraps them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .cc_forms import PAIR_FORMS, SAMPLE_FORMS, group_ids, group_sums, pair_form_values, sample_form_values

__all__ = [
    "FORMS",
    "NORMALIZATIONS",
    "CCStats",
    "CCLoss",
    "cc_ratio",
    "normalize_attention",
    "pairwise_distances",
    "cc_statistics",
    "compute_dtype",
]

#: The CC-Loss variants. ``ratio`` is the paper's statistic; the ``pair_*`` forms average over class
#: pairs instead of sample pairs (:mod:`ccloss.cc_forms`).
FORMS = SAMPLE_FORMS + PAIR_FORMS
#: What is done to the attention vectors before the distances (see :func:`normalize_attention`).
NORMALIZATIONS = ("none", "unit", "standardize")
#: Added to the mean squared norm before the square root of ``standardize`` (a batch of identical
#: vectors gives zeros, not 0/0).
STANDARDIZE_EPS = 1e-12


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64 (gradcheck, references); everything else is computed in float32: a Gram
    matrix in bf16 is badly wrong (docs/paper_choices.md, "Numerics"). Every loss uses this."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def pairwise_distances(attention: torch.Tensor, squared: bool = True) -> torch.Tensor:
    """B x B Euclidean distance matrix from the Gram matrix (one matmul).

    D = n 1^T + 1 n^T - 2 A A^T with n_i = ||a_i||^2, after subtracting the batch mean (distances
    are shift-invariant and centring reduces cancellation), clamped at 0, with an exact zero
    diagonal. Computed in float32 (float64 for float64 input) even under autocast.
    ``squared=False`` returns sqrt(D) with a finite gradient where two vectors coincide.
    """
    if attention.dim() != 2:
        raise ValueError(f"attention must be a 2-D B x C tensor, got shape {tuple(attention.shape)}")
    with torch.autocast(device_type=attention.device.type, enabled=False):
        a = attention.to(compute_dtype(attention))
        a = a - a.mean(dim=0, keepdim=True)
        gram = a @ a.T
        norms = gram.diagonal()
        dist = (norms[:, None] + norms[None, :] - 2.0 * gram).clamp_min(0.0)
        dist = 0.5 * (dist + dist.T)  # exactly symmetric despite rounding in the matmul
        eye = torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
        dist = dist.masked_fill(eye, 0.0)
        return dist if squared else _safe_sqrt(dist)


def cc_ratio(attention: torch.Tensor, labels: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The plain CC-Loss of one batch: d_intra / (d_inter + eps) on squared distances.

    What :func:`cc_statistics` computes with its defaults (``form="ratio"``, no groups, no
    normalisation), written the short way for reading; notebook 01 builds it cell by cell.
    """
    check_attention_labels(attention, labels)
    dist = pairwise_distances(attention)
    labels = labels.to(dist.device)
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=dist.device)
    intra, inter = dist[same & off_diagonal], dist[~same]
    d_intra = intra.mean() if intra.numel() else dist.sum() * 0.0
    d_inter = inter.mean() if inter.numel() else dist.sum() * 0.0
    return d_intra / (d_inter + eps)


# --------------------------------------------------------------------------------------------
# The variants: forms, normalisation, groups
# --------------------------------------------------------------------------------------------


@dataclass
class CCStats:
    """Everything CC-Loss computes on one batch (for the loss, logging and figures)."""

    loss: torch.Tensor  #: scalar loss (mean of the per-group values)
    d_intra: torch.Tensor  #: scalar, mean same-class distance (averaged over groups)
    d_inter: torch.Tensor  #: scalar, mean different-class distance (averaged over groups)
    distances: torch.Tensor  #: B x B pairwise distance matrix (squared unless squared=False)
    group_values: torch.Tensor  #: per-group loss values (one entry without group_size)


def normalize_attention(attention: torch.Tensor, how: str = "none") -> torch.Tensor:
    """The attention vectors as the distances see them (computed in float32 / float64).

    - ``none``:        A as it is.
    - ``unit``:        a_i / ||a_i|| (cosine geometry: only directions count; a zero vector stays 0).
    - ``standardize``: (a_i - m) / s with m the batch mean and s^2 = mean_i ||a_i - m||^2 (+1e-12):
      the batch's mean squared distance to its centre is 1, so no loss that depends on the
      distances can be lowered by shrinking every vector towards the mean (the scale is gone).
    """
    if how not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {how!r}; valid: {', '.join(NORMALIZATIONS)}")
    with torch.autocast(device_type=attention.device.type, enabled=False):
        a = attention.to(compute_dtype(attention))
        if how == "unit":  # a zero vector stays 0, with a finite gradient (safe sqrt, no division by 0)
            norm = _safe_sqrt(a.pow(2).sum(dim=1, keepdim=True))
            return a / torch.where(norm > 0, norm, torch.ones_like(norm))
        if how == "standardize":
            centred = a - a.mean(dim=0, keepdim=True)
            return centred / torch.sqrt(centred.pow(2).sum(dim=1).mean() + STANDARDIZE_EPS)
        return a


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with a zero (finite) gradient at 0: the 'double where' trick (NaN stays NaN)."""
    zero = x == 0
    return torch.where(zero, torch.zeros_like(x), torch.sqrt(torch.where(zero, torch.ones_like(x), x)))


def cc_statistics(
    attention: torch.Tensor,
    labels: torch.Tensor,
    form: str = "ratio",
    squared: bool = True,
    eps: float = 1e-3,
    group_size: int | None = None,
    normalize: str = "none",
    tau: float = 0.1,
) -> CCStats:
    """CC-Loss and its pieces for attention vectors A (B x C) and integer labels (B).

    ``normalize`` is applied to the whole batch first (:func:`normalize_attention`). With
    ``group_size=g`` samples [0, g), [g, 2g), ... form groups (the last one may be shorter); pairs
    only count inside a group and the loss is the mean of the per-group values over the groups
    that have at least one pair. ``form`` is one of :data:`FORMS`, defined in :mod:`ccloss.cc_forms`
    (``ratio``: d_intra / (d_inter + eps); the ``pair_*`` forms average over class pairs; ``tau``
    is the temperature of ``pair_softmax``). ``d_intra`` / ``d_inter`` are sample-pair means
    whatever the form.
    """
    check_attention_labels(attention, labels)
    _check_options(form, squared, eps, group_size, normalize, tau)
    dist = pairwise_distances(normalize_attention(attention, normalize), squared=squared)
    labels = labels.to(dist.device)
    group_id, n_groups = group_ids(dist.shape[0], group_size, dist.device)
    sums, counts = group_sums(dist, labels, group_id, n_groups)
    d_intra, d_inter = sums[0] / counts[0].clamp_min(1.0), sums[1] / counts[1].clamp_min(1.0)
    if form in PAIR_FORMS:
        values = pair_form_values(form, dist, labels, group_id, n_groups, eps, tau)
    else:
        values = sample_form_values(form, sums, (d_intra, d_inter), eps)
    # sizes are known on the host, so no device synchronisation: every group but the last has
    # >= 2 members, so the groups with a pair are the first k (a trailing group of one is left out)
    n = dist.shape[0]
    with_pairs = n_groups - (n - (n_groups - 1) * (group_size or n) < 2)
    if not with_pairs:  # a batch of one sample: no pair, a zero loss that still belongs to the graph
        zero = dist.sum() * 0.0
        return CCStats(loss=zero, d_intra=zero, d_inter=zero, distances=dist, group_values=values)
    return CCStats(
        loss=values[:with_pairs].mean(),
        d_intra=d_intra[:with_pairs].mean(),
        d_inter=d_inter[:with_pairs].mean(),
        distances=dist,
        group_values=values,
    )


class CCLoss(nn.Module):
    """Channel Correlation Loss (Song et al., ICPR 2020), as a module.

    ``CCLoss()(attention, labels)`` returns the scalar loss; ``.statistics(...)`` returns a
    :class:`CCStats` with the distance matrix and the intra/inter means as well. Add it to the
    cross-entropy yourself: ``loss = ce + lam * cc(attention, labels)``.

    Args:
        form: one of ``FORMS``; ``"ratio"`` (default) is d_intra / (d_inter + eps).
        squared: squared Euclidean distances (default) or plain ones (safe gradient at 0).
        eps: added to the denominator of the ratio forms.
        group_size: None (all pairs of the batch) or g >= 2 (block-diagonal groups of g).
        normalize: ``none``, ``unit`` or ``standardize`` (see :func:`normalize_attention`).
        tau: temperature of the ``pair_softmax`` form (> 0; unused by the other forms).

    The attribute ``gather`` (default None) may hold a function ``(attention, labels) ->
    (attention, labels)`` applied first; ``ccloss.runtime.distributed`` uses it to gather the global
    batch with gradients.
    """

    def __init__(
        self,
        form: str = "ratio",
        squared: bool = True,
        eps: float = 1e-3,
        group_size: int | None = None,
        normalize: str = "none",
        tau: float = 0.1,
    ) -> None:
        super().__init__()
        _check_options(form, squared, eps, group_size, normalize, tau)
        self.form = form
        self.squared = squared
        self.eps = float(eps)
        self.group_size = group_size
        self.normalize = normalize
        self.tau = float(tau)
        self.gather: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None

    def statistics(self, attention: torch.Tensor, labels: torch.Tensor) -> CCStats:
        if self.gather is not None:
            attention, labels = self.gather(attention, labels)
        return cc_statistics(
            attention, labels, self.form, self.squared, self.eps, self.group_size, self.normalize, self.tau
        )

    def forward(self, attention: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.statistics(attention, labels).loss

    def extra_repr(self) -> str:
        return (
            f"form={self.form!r}, squared={self.squared}, eps={self.eps}, group_size={self.group_size}, "
            f"normalize={self.normalize!r}" + (f", tau={self.tau}" if self.form == "pair_softmax" else "")
        )


def check_attention_labels(attention: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(attention, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError("CC-Loss takes two tensors: attention (B x C) and labels (B)")
    if attention.dim() != 2:
        raise ValueError(
            f"attention must be a 2-D B x C tensor of channel-attention vectors, got shape "
            f"{tuple(attention.shape)}; flatten or pool the feature map first"
        )
    if not attention.is_floating_point():
        raise ValueError(f"attention must be a floating-point tensor, got {attention.dtype}")
    if attention.shape[0] == 0:
        raise ValueError("attention is empty: CC-Loss needs a batch of at least one sample")
    if labels.dim() != 1:
        raise ValueError(f"labels must be a 1-D tensor of class indices, got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}; use labels.long()")
    if labels.shape[0] != attention.shape[0]:
        raise ValueError(
            f"label count ({labels.shape[0]}) does not match the number of attention vectors ({attention.shape[0]})"
        )


def _check_options(
    form: str, squared: bool, eps: float, group_size: int | None, normalize: str = "none", tau: float = 0.1
) -> None:
    if form not in FORMS:
        raise ValueError(f"unknown CC-Loss form {form!r}; valid forms: {', '.join(FORMS)}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown CC-Loss normalize {normalize!r}; valid: {', '.join(NORMALIZATIONS)}")
    if not isinstance(squared, bool):
        raise ValueError(f"squared must be True or False, got {squared!r}")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if not (isinstance(tau, (int, float)) and not isinstance(tau, bool) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau (the temperature of pair_softmax) must be a finite number > 0, got {tau!r}")
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2):
        raise ValueError(
            f"group_size must be None (the whole batch) or an integer >= 2 (a group needs a pair), got {group_size!r}"
        )
