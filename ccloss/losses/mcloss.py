"""MC-Loss (Mutual-Channel Loss, Chang et al., TIP 2020): class-grouped channels, discriminality and diversity."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from ..models import ModelOutput
from ..options import option
from .base import NONNEGATIVE, Criterion, LossOutput, as_compute, detached

__all__ = ["MCLoss", "mc_xi", "mc_channel_mask", "mc_discriminality", "mc_diversity"]


def mc_xi(width: int, num_classes: int) -> int:
    """Channels per class of a ``width``-channel last stage: max(3, width // K) (official code: 3 for 200 classes)."""
    return max(3, int(width) // int(num_classes))


def mc_channel_mask(num_classes: int, xi: int, mask_fraction: float = 0.5, generator=None, device=None) -> Tensor:
    """MC-Loss's random 0/1 mask: floor(xi * mask_fraction) zeros per group of xi, drawn on the CPU."""
    n_drop = int(math.floor(int(xi) * float(mask_fraction)))
    ranks = torch.rand(int(num_classes), int(xi), generator=generator).argsort(dim=1).argsort(dim=1)
    mask = (ranks >= n_drop).float().reshape(-1)
    return mask if device is None else mask.to(device)


def _grouped(feature_map: Tensor, num_classes: int, xi: int) -> Tensor:
    if feature_map.dim() != 4:
        raise ValueError(f"MC-Loss needs a B x C x H x W feature map, got shape {tuple(feature_map.shape)}")
    needed = num_classes * xi
    if feature_map.shape[1] < needed:
        has = feature_map.shape[1]
        raise ValueError(f"MC-Loss with {num_classes} classes and xi={xi} needs at least {needed} channels in the last "
                         f"stage, the feature map has {has}: last_stage_width={needed} (TrainConfig's)")  # fmt: skip
    return as_compute(feature_map[:, :needed])


def mc_discriminality(feature_map: Tensor, labels: Tensor, num_classes: int, xi: int, mask: Tensor) -> Tensor:
    """L_dis: CE on the spatial mean of each masked group's cross-channel max (masked channels times 0)."""
    fmap = _grouped(feature_map, num_classes, xi)
    b, _, h, w = fmap.shape
    masked = fmap * mask.to(fmap)[None, :, None, None]
    scores = masked.reshape(b, num_classes, xi, h, w).amax(dim=2).mean(dim=(2, 3))
    return F.cross_entropy(scores, labels)


def mc_diversity(feature_map: Tensor, num_classes: int, xi: int) -> Tensor:
    """Mean diversity in [1, xi]: per group, the sum over positions of the max over its channels' spatial softmax."""
    fmap = _grouped(feature_map, num_classes, xi)
    b, _, h, w = fmap.shape
    spatial = F.softmax(fmap.reshape(b, num_classes * xi, h * w), dim=2)
    return spatial.reshape(b, num_classes, xi, h * w).amax(dim=2).sum(dim=2).mean()


@dataclass(frozen=True)
class MCOptions:
    xi: int | None = option(None, "channels per class (None: C // K)", must="None or an integer >= 1", test=(1).__le__)
    mask_fraction: float = option(0.5, "fraction of each group masked", must="in [0, 1)", test=lambda v: 0 <= v < 1)
    alpha_dis: float = option(1.5, "weight of L_dis", **NONNEGATIVE)
    beta_div: float = option(20.0, "weight of the diversity term", **NONNEGATIVE)


class MCLoss(Criterion):
    """MC-Loss (Chang et al., TIP 2020): L = CE + alpha_dis L_dis + beta_div (1 - div / xi) on the first K xi channels
    (``xi=None``: C // K). Parts: ce, mc_dis, mc_div_loss, mc_diversity."""

    name, paper_name, Options = "mcloss", "MC-Loss", MCOptions
    summary = "CE + alpha_dis L_dis + beta_div (1 - div/xi); xi=None: C // K of the last stage"

    def __init__(self, num_classes: int, generator: torch.Generator | None = None, **hparams) -> None:
        super().__init__(num_classes, **hparams)
        self.generator = generator

    def forward(self, output: ModelOutput, labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        fmap = output.feature_map
        xi = self.xi or max(1, fmap.shape[1] // self.num_classes)
        mask = mc_channel_mask(self.num_classes, xi, self.mask_fraction, self.generator, fmap.device)
        dis = mc_discriminality(fmap, labels, self.num_classes, xi, mask)
        diversity = mc_diversity(fmap, self.num_classes, xi)
        div_loss = 1.0 - diversity / xi
        ce = F.cross_entropy(as_compute(logits), labels)
        loss = ce + self.alpha_dis * dis + self.beta_div * div_loss
        return LossOutput(loss=loss, parts=detached(ce=ce, mc_dis=dis, mc_div_loss=div_loss, mc_diversity=diversity))
