"""CC-Loss: the channel correlation loss on a mini-batch of channel-attention vectors.

Song et al., "CC-Loss: Channel Correlation Loss for Image Classification", ICPR 2020
(arXiv:2010.05469). The paper released no code; this is the reconstruction documented in the
README ("What the paper leaves open"):

    D_ij    = ||a_i - a_j||^2                      (Gram form: n_i + n_j - 2 a_i.a_j, one matmul)
    d_intra = mean of D_ij over same-class pairs i != j      (0 without such a pair)
    d_inter = mean of D_ij over different-class pairs
    CC      = d_intra / (d_inter + eps)                      (form="ratio", the default)

and the training objective is CE + lambda * CC. The other ``form`` values are the variants the
ablation notebook compares; ``group_size`` takes the statistic over consecutive groups of
samples (block-diagonal pairs), which decouples the paper's batch of 32 from the optimiser batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

__all__ = ["FORMS", "NORMALIZATIONS", "CCStats", "CCLoss", "normalize_attention", "pairwise_distances",
           "cc_statistics", "dataset_intra_inter"]

#: The CC-Loss variants. ``ratio`` is the default reconstruction.
FORMS = ("ratio", "sums", "difference", "log_ratio")
#: What is done to the attention vectors before the distances (see :func:`normalize_attention`).
NORMALIZATIONS = ("none", "unit", "standardize")
#: Added to the mean squared norm before the square root of ``standardize`` (a batch of identical
#: vectors gives zeros, not 0/0).
STANDARDIZE_EPS = 1e-12


@dataclass
class CCStats:
    """Everything CC-Loss computes on one batch (for the loss, logging and figures)."""

    loss: torch.Tensor  #: scalar loss (mean of the per-group values)
    d_intra: torch.Tensor  #: scalar, mean same-class distance (averaged over groups)
    d_inter: torch.Tensor  #: scalar, mean different-class distance (averaged over groups)
    distances: torch.Tensor  #: B x B pairwise distance matrix (squared unless squared=False)
    group_values: torch.Tensor  #: per-group loss values (one entry without group_size)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    # float64 stays float64 (gradcheck, references); everything else is computed in float32:
    # a Gram matrix in bf16 is badly wrong (see METHOD.md, "Numerics").
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with a zero (finite) gradient at 0: the 'double where' trick."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


def normalize_attention(attention: torch.Tensor, how: str = "none") -> torch.Tensor:
    """The attention vectors as the distances see them (computed in float32 / float64).

    - ``none``:        A as it is.
    - ``unit``:        a_i / ||a_i|| (cosine geometry: only directions count).
    - ``standardize``: (a_i - m) / s with m the batch mean and s^2 = mean_i ||a_i - m||^2 (+1e-12):
      the batch's mean squared distance to its centre is 1, so no loss that depends on the
      distances can be lowered by shrinking every vector towards the mean (the scale is gone).
    """
    if how not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {how!r}; valid: {', '.join(NORMALIZATIONS)}")
    with torch.autocast(device_type=attention.device.type, enabled=False):
        a = attention.to(compute_dtype(attention))
        if how == "unit":
            return a / a.norm(dim=1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
        if how == "standardize":
            centred = a - a.mean(dim=0, keepdim=True)
            return centred / torch.sqrt(centred.pow(2).sum(dim=1).mean() + STANDARDIZE_EPS)
        return a


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


def _check_inputs(attention: torch.Tensor, labels: torch.Tensor) -> None:
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
        raise ValueError(
            f"labels must be integer class indices, got dtype {labels.dtype}; use labels.long()"
        )
    if labels.shape[0] != attention.shape[0]:
        raise ValueError(
            f"label count ({labels.shape[0]}) does not match the number of attention vectors "
            f"({attention.shape[0]})"
        )


def _check_options(form: str, squared: bool, eps: float, group_size: Optional[int], normalize: str = "none") -> None:
    if form not in FORMS:
        raise ValueError(f"unknown CC-Loss form {form!r}; valid forms: {', '.join(FORMS)}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown CC-Loss normalize {normalize!r}; valid: {', '.join(NORMALIZATIONS)}")
    if not isinstance(squared, bool):
        raise ValueError(f"squared must be True or False, got {squared!r}")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if group_size is not None:
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
            raise ValueError(
                f"group_size must be None (the whole batch) or an integer >= 2 (a group needs a "
                f"pair), got {group_size!r}"
            )


def cc_statistics(
    attention: torch.Tensor,
    labels: torch.Tensor,
    form: str = "ratio",
    squared: bool = True,
    eps: float = 1e-3,
    group_size: Optional[int] = None,
    normalize: str = "none",
) -> CCStats:
    """CC-Loss and its pieces for attention vectors A (B x C) and integer labels (B).

    ``normalize`` is applied to the whole batch first (:func:`normalize_attention`).

    With ``group_size=g`` samples [0, g), [g, 2g), ... form groups (the last one may be shorter);
    pairs only count inside a group and the loss is the mean of the per-group values over the
    groups that have at least one pair. Per group, with P = same-class pairs i != j and
    Q = different-class pairs:

    - ``ratio``:      d_intra / (d_inter + eps)
    - ``sums``:       sum_P D / (sum_Q D + eps)   (diagonal in the intra mask; it adds 0)
    - ``difference``: d_intra - d_inter
    - ``log_ratio``:  log(1 + d_intra / (d_inter + eps))
    """
    _check_inputs(attention, labels)
    _check_options(form, squared, eps, group_size, normalize)
    dist = pairwise_distances(normalize_attention(attention, normalize), squared=squared)
    n = dist.shape[0]
    device = dist.device
    index = torch.arange(n, device=device)
    labels = labels.to(device)
    same = labels[:, None] == labels[None, :]
    off_diagonal = index[:, None] != index[None, :]
    group_id = index // group_size if group_size is not None else torch.zeros_like(index)
    group = group_size if group_size is not None else n
    n_groups = -(-n // group)
    # sizes are known on the host: no device synchronisation anywhere in this function. Every
    # group but the last has `group` >= 2 members, so the groups with a pair are the first k.
    groups_with_pairs = n_groups - (n - (n_groups - 1) * group < 2)
    in_group = group_id[:, None] == group_id[None, :]
    intra_mask = same & off_diagonal & in_group
    inter_mask = ~same & in_group

    def per_group(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n_groups, dtype=values.dtype, device=device).index_add(0, group_id, values)

    zero = dist.new_zeros(())
    sum_intra = per_group(torch.where(intra_mask, dist, zero).sum(dim=1))
    sum_inter = per_group(torch.where(inter_mask, dist, zero).sum(dim=1))
    count_intra = per_group(intra_mask.sum(dim=1).to(dist.dtype))
    count_inter = per_group(inter_mask.sum(dim=1).to(dist.dtype))
    d_intra = sum_intra / count_intra.clamp_min(1.0)
    d_inter = sum_inter / count_inter.clamp_min(1.0)

    if form == "ratio":
        values = d_intra / (d_inter + eps)
    elif form == "sums":
        values = sum_intra / (sum_inter + eps)
    elif form == "difference":
        values = d_intra - d_inter
    else:  # log_ratio
        values = torch.log1p(d_intra / (d_inter + eps))

    if groups_with_pairs:
        # a trailing group of one has a finite zero value and is left out of the mean (slicing
        # by a host-known count: no host-to-device copy, so no stall on the GPU)
        loss = values[:groups_with_pairs].mean()
        mean_intra = d_intra[:groups_with_pairs].mean()
        mean_inter = d_inter[:groups_with_pairs].mean()
    else:  # a batch of one sample: no pair, a zero loss that still belongs to the graph
        loss = dist.sum() * 0.0
        mean_intra = mean_inter = loss
    return CCStats(loss=loss, d_intra=mean_intra, d_inter=mean_inter, distances=dist, group_values=values)


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

    The attribute ``gather`` (default None) may hold a function ``(attention, labels) ->
    (attention, labels)`` applied first; ``ccloss.distributed`` uses it to gather the global
    batch with gradients.
    """

    def __init__(
        self, form: str = "ratio", squared: bool = True, eps: float = 1e-3, group_size: Optional[int] = None,
        normalize: str = "none",
    ) -> None:
        super().__init__()
        _check_options(form, squared, eps, group_size, normalize)
        self.form = form
        self.squared = squared
        self.eps = float(eps)
        self.group_size = group_size
        self.normalize = normalize
        self.gather: Optional[Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = None

    def statistics(self, attention: torch.Tensor, labels: torch.Tensor) -> CCStats:
        if self.gather is not None:
            attention, labels = self.gather(attention, labels)
        return cc_statistics(attention, labels, self.form, self.squared, self.eps, self.group_size, self.normalize)

    def forward(self, attention: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.statistics(attention, labels).loss

    def extra_repr(self) -> str:
        return (f"form={self.form!r}, squared={self.squared}, eps={self.eps}, group_size={self.group_size}, "
                f"normalize={self.normalize!r}")


#: Below this mean inter-class squared distance a set of attention vectors counts as collapsed: it
#: is the CCLoss default ``eps``, so there the loss's denominator is mostly ``eps`` and the ratio
#: form is minimised by shrinking every vector onto one point (see the README, "Known issue").
COLLAPSE_TOL = 1e-3


def dataset_intra_inter(
    attention: torch.Tensor, labels: torch.Tensor, eps: float = 0.0, collapse_tol: float = COLLAPSE_TOL,
) -> dict[str, float]:
    """Ratio-form CC statistic of a whole set (e.g. a test set) in O(N C) memory.

    Uses sum_{i,j in S} ||a_i - a_j||^2 = 2 |S| sum_i ||a_i||^2 - 2 ||sum_i a_i||^2 over ordered
    pairs, per class for the intra part and over the whole set for the total; inter = total -
    intra. Returns {"d_intra", "d_inter", "ratio", "collapsed"} (means over unordered pairs,
    squared distances), equal to ``cc_statistics(..., form="ratio")`` on the same vectors without
    building N x N. ``ratio`` is NaN when d_inter + eps is 0 (0/0: every vector identical);
    ``collapsed`` is True when d_inter < ``collapse_tol``, so a tiny ratio of collapsed vectors is
    not mistaken for separated classes.
    """
    if not (math.isfinite(collapse_tol) and collapse_tol >= 0):
        raise ValueError(f"collapse_tol must be a finite number >= 0, got {collapse_tol!r}")
    _check_inputs(attention, labels)
    a = attention.detach().to(torch.float64).cpu()
    a = a - a.mean(dim=0, keepdim=True)
    labels = labels.detach().cpu().long()
    n = a.shape[0]
    sq_norms = (a * a).sum(dim=1)

    def pair_sum(rows: torch.Tensor, norms: torch.Tensor) -> float:
        return float(2 * rows.shape[0] * norms.sum() - 2 * (rows.sum(dim=0) ** 2).sum())

    total = pair_sum(a, sq_norms)
    intra = 0.0
    intra_pairs = 0
    for cls in labels.unique():
        mask = labels == cls
        intra += pair_sum(a[mask], sq_norms[mask])
        intra_pairs += int(mask.sum()) * (int(mask.sum()) - 1)
    inter_pairs = n * (n - 1) - intra_pairs
    d_intra = intra / intra_pairs if intra_pairs else 0.0
    d_inter = (total - intra) / inter_pairs if inter_pairs else 0.0
    ratio = d_intra / (d_inter + eps) if (d_inter + eps) > 0 else float("nan")
    return {"d_intra": d_intra, "d_inter": d_inter, "ratio": ratio, "collapsed": bool(d_inter < collapse_tol)}
