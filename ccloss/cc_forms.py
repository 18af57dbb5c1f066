r"""The forms of CC-Loss: per group of samples, the loss's value from the distance matrix D.

Sample pairs (P = same-class pairs i != j, Q = different-class pairs, d_intra and d_inter their mean distances;
e = eps * d_all + 1e-12, d_all the group's detached mean distance, or e = eps with ``relative_eps=False``):
``ratio`` d_intra / (d_inter + e), the paper's; ``sums`` sum_P D / (sum_Q D + e); ``difference`` d_intra - d_inter;
``log_ratio`` log(1 + d_intra / (d_inter + e)).

Class pairs a != b, each counting once (a sample-pair mean is dominated by the farthest classes:
docs/study_cc_default.md): d_ab = mean D_ij over i in a, j in b; d_aa = mean over i != j in a; s_ab = mean of
the d_aa, d_bb that exist; r_ab = s_ab / (d_ab + e). ``pair_ratio``: mean of r_ab (the default);
``pair_log_ratio``: mean of log((s_ab + e) / (d_ab + e)); ``pair_softmax``: tau * log(mean of exp(r_ab / tau)),
between the mean (tau -> inf) and the worst pair (tau -> 0). A class pair counts when one of its classes has two
samples in the group (none: 0). Two B x B matrix products, no host sync: (E D E)_ij sums D over the classes of
i and j (E: same class).
"""

from __future__ import annotations

import torch

__all__ = ["SAMPLE_FORMS", "PAIR_FORMS", "group_ids", "group_sums", "sample_form_values", "pair_form_values"]

SAMPLE_FORMS = ("ratio", "sums", "difference", "log_ratio")  #: forms over sample pairs (the paper's ``ratio`` first)
PAIR_FORMS = ("pair_ratio", "pair_log_ratio", "pair_softmax")  #: forms over class pairs


def group_ids(n: int, group_size: int | None, device: torch.device) -> tuple[torch.Tensor, int]:
    """The group of each of n samples ([0, g), [g, 2g), ...; one without ``group_size``), the group count."""
    index = torch.arange(n, device=device)
    group_id = index // group_size if group_size is not None else torch.zeros_like(index)
    return group_id, -(-n // (group_size or n))


def group_sums(dist: torch.Tensor, labels: torch.Tensor, group_id: torch.Tensor, n_groups: int):
    """Per group: sums and counts of the intra (same class, i != j) and inter distances."""
    n, device = dist.shape[0], dist.device
    index = torch.arange(n, device=device)
    same = labels[:, None] == labels[None, :]
    in_group = group_id[:, None] == group_id[None, :]
    intra_mask = same & (index[:, None] != index[None, :]) & in_group
    inter_mask = ~same & in_group

    def per_group(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n_groups, dtype=values.dtype, device=device).index_add(0, group_id, values)

    masks, zero = (intra_mask, inter_mask), dist.new_zeros(())
    sums = tuple(per_group(torch.where(mask, dist, zero).sum(dim=1)) for mask in masks)
    return sums, tuple(per_group(mask.sum(dim=1).to(dist.dtype)) for mask in masks)


def sample_form_values(form: str, sums, means, floor: torch.Tensor) -> torch.Tensor:
    """A sample-pair form per group, from :func:`group_sums`' sums, their means and the floor e."""
    (sum_intra, sum_inter), (d_intra, d_inter) = sums, means
    if form == "ratio":
        return d_intra / (d_inter + floor)
    if form == "sums":
        return sum_intra / (sum_inter + floor)
    if form == "difference":
        return d_intra - d_inter
    return torch.log1p(d_intra / (d_inter + floor))  # log_ratio


def _class_pair_means(dist: torch.Tensor, labels: torch.Tensor, group_id: torch.Tensor):
    """Per pair (i, j): d_{c(i) c(j)}, the classes' intra means, whether they exist, and the weight 1 / (n_a n_b)."""
    same_group = group_id[:, None] == group_id[None, :]
    same_class = (labels[:, None] == labels[None, :]) & same_group
    block = same_class.to(dist.dtype)
    sums = block @ torch.where(same_group, dist, dist.new_zeros(())) @ block
    counts = block.sum(dim=1)
    pair_counts = counts[:, None] * counts[None, :]
    d_pair = sums / pair_counts
    has_intra = counts >= 2
    d_self = sums.diagonal() / (counts * (counts - 1)).clamp_min(1.0)
    weight = torch.where(same_group & ~same_class, 1.0 / pair_counts, dist.new_zeros(()))
    return d_pair, d_self, has_intra, weight


def pair_form_values(
    form: str, dist: torch.Tensor, labels: torch.Tensor, group_id: torch.Tensor, n_groups: int, floor, tau: float
) -> torch.Tensor:
    """A class-pair form per group (the module docstring), shape (n_groups,); ``floor``: e per group."""
    with torch.autocast(device_type=dist.device.type, enabled=False):
        d_pair, d_self, has_intra, weight = _class_pair_means(dist, labels, group_id)
        eps = floor[group_id][:, None]
        available = has_intra.to(dist.dtype)
        both = available[:, None] + available[None, :]
        valid = (weight > 0) & (both > 0)
        one, zero = dist.new_ones(()), dist.new_zeros(())
        weight = torch.where(valid, weight, zero)
        spread = ((available * d_self)[:, None] + (available * d_self)[None, :]) / both.clamp_min(1.0)
        denominator = torch.where(valid, d_pair + eps, one)  # invalid entries never divide by 0
        ratio = torch.where(valid, spread / denominator, zero)

        def per_group(values: torch.Tensor) -> torch.Tensor:
            return values.new_zeros(n_groups).index_add(0, group_id, values.sum(dim=1))

        total = per_group(weight)
        safe_total = torch.where(total > 0, total, one)
        nan_guard = 0.0 * dist.sum()  # a NaN or Inf distance reaches the loss even where no class pair counts
        if form == "pair_ratio":
            return per_group(weight * ratio) / safe_total + nan_guard
        if form == "pair_log_ratio":
            logs = torch.log(torch.where(valid, spread + eps, one)) - torch.log(denominator)
            return per_group(weight * logs) / safe_total + nan_guard
        # pair_softmax: tau * log(weighted mean of exp(r / tau)), shifted by each group's largest r
        top = torch.where(valid, ratio, zero).amax(dim=1).detach()
        top = top.new_zeros(n_groups).scatter_reduce(0, group_id, top, "amax", include_self=False)
        scaled = torch.where(valid, torch.exp((ratio - top[group_id][:, None]) / tau), zero)
        mean_exp = per_group(weight * scaled) / safe_total
        value = top + tau * torch.log(torch.where(total > 0, mean_exp, one))
        return torch.where(total > 0, value, zero) + nan_guard
