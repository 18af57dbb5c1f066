"""MC-Loss (Mutual-Channel Loss, Chang et al., TIP 2020): class-grouped channels, discriminality and diversity."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import Criterion, LossOutput, ModelNeeds, as_compute, detached, require

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..models import ModelOutput

__all__ = ["MCLoss", "MCLOSS_XI", "mcloss_xi_for", "mc_channel_mask", "mc_discriminality", "mc_diversity"]


#: Channels per class (xi) of MC-Loss per dataset. Rule: xi = max(3, 512 // num_classes).
#: - Every row of the paper's table uses the same backbone; at 512 channels the loss changes
#:   nothing else when K * xi fits in 512, so xi = 512 // K: 10 classes -> 51 (510 channels),
#:   100 classes -> 5 (500 channels).
#: - The official code (PRIS-CV/Mutual-Channel-Loss) uses xi = 3 for the 200 CUB classes and
#:   widens VGG16's / ResNet18's last stage to 600 channels; its ResNet50 script uses 10-11 per
#:   class in 2048 channels. 3 is its smallest group, so Cars-196 gets xi = 3 and a last stage
#:   widened to 588 channels, mirroring the official CUB-200 setting.
MCLOSS_XI: dict[str, int] = {"digits": 51, "mnist": 51, "cifar100": 5, "cars196": 3}

_MCLOSS_BASE_WIDTH = 512


def _dataset_key(dataset: str) -> str:
    return "".join(ch for ch in str(dataset).lower() if ch.isalnum())


def mcloss_xi_for(dataset: str | None, num_classes: int, base_width: int = _MCLOSS_BASE_WIDTH) -> int:
    """Channels per class for MC-Loss: ``MCLOSS_XI[dataset]`` or max(3, base_width // num_classes).

    ``dataset`` is matched ignoring case, '-' and '_' ("CIFAR-100" -> "cifar100"); an unknown
    dataset (or None) uses the rule, which the table follows.
    """
    if dataset is not None and _dataset_key(dataset) in MCLOSS_XI:
        return MCLOSS_XI[_dataset_key(dataset)]
    return max(3, int(base_width) // int(num_classes))


def mc_channel_mask(
    num_classes: int,
    xi: int,
    mask_fraction: float = 0.5,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Random channel mask of MC-Loss: (num_classes * xi,) of 0/1 floats.

    In each group of xi channels, floor(xi * mask_fraction) channels chosen uniformly at random
    are 0. Drawn on the CPU from ``generator`` (default: the global RNG), then moved to
    ``device``. The official code keeps 2 of 3 channels (drops 1 = floor(3 * 0.5)).
    """
    num_classes, xi = int(num_classes), int(xi)
    n_drop = int(math.floor(xi * float(mask_fraction)))
    keys = torch.rand(num_classes, xi, generator=generator)
    ranks = keys.argsort(dim=1).argsort(dim=1)
    mask = (ranks >= n_drop).float().reshape(-1)
    return mask if device is None else mask.to(device)


def _grouped(feature_map: Tensor, num_classes: int, xi: int) -> Tensor:
    if feature_map.dim() != 4:
        raise ValueError(f"MC-Loss needs a B x C x H x W feature map, got shape {tuple(feature_map.shape)}")
    needed = num_classes * xi
    if feature_map.shape[1] < needed:
        raise ValueError(
            f"MC-Loss with {num_classes} classes and xi={xi} needs at least {needed} channels in the "
            f"last stage, the feature map has {feature_map.shape[1]}: build the model with "
            f"last_stage_width={needed} (model_kwargs_for does this)"
        )
    return as_compute(feature_map[:, :needed])


def mc_discriminality(feature_map: Tensor, labels: Tensor, num_classes: int, xi: int, mask: Tensor) -> Tensor:
    """L_dis: CE on B x K scores = spatial mean of the cross-channel max of each masked group.

    The first num_classes * xi channels are used; group k is channels [k xi, (k + 1) xi).
    Masked channels are multiplied by 0 before the max (as in the official code).
    """
    fmap = _grouped(feature_map, num_classes, xi)
    b, _, h, w = fmap.shape
    masked = fmap * mask.to(fmap)[None, :, None, None]
    scores = masked.reshape(b, num_classes, xi, h, w).amax(dim=2).mean(dim=(2, 3))
    return F.cross_entropy(scores, labels)


def mc_diversity(feature_map: Tensor, num_classes: int, xi: int) -> Tensor:
    """Mean diversity of MC-Loss, in [1, min(xi, H W)].

    Per channel a softmax over the H W positions; per group the max over its xi channels at
    each position, summed over positions; mean over the classes and the batch. It is xi when
    the channels of each group peak at different positions and 1 when they coincide.
    """
    fmap = _grouped(feature_map, num_classes, xi)
    b, _, h, w = fmap.shape
    spatial = F.softmax(fmap.reshape(b, num_classes * xi, h * w), dim=2)
    return spatial.reshape(b, num_classes, xi, h * w).amax(dim=2).sum(dim=2).mean()


class MCLoss(Criterion):
    """MC-Loss (Chang et al., TIP 2020): L = CE + alpha_dis * L_dis + beta_div * (1 - div / xi).

    The last feature map has num_classes * xi channels grouped per class (extra channels are
    ignored). L_dis = CE on the spatial mean of the cross-channel max of each group after a
    random channel mask (one mask for the whole batch, a new one each call, floor(xi *
    mask_fraction) channels dropped per group); div = mean over classes and batch of the
    summed cross-channel max of the per-channel spatial softmax (see :func:`mc_diversity`).
    This is exactly the official code (PRIS-CV/Mutual-Channel-Loss, CUB-200-2011*.py):
    ``loss = ce + alpha_1 * loss_1 + beta_1 * loss_2`` with ``loss_2 = 1 - mean(div) / cnum``,
    beta_1 = 20, alpha_1 = 1.5 (ResNet18 script; the VGG16 script's default is 2.0), and a
    mask keeping 2 of 3 channels. ``xi=None`` (default) picks ``mcloss_xi_for(None, K)`` =
    max(3, 512 // K); pass ``xi=mcloss_xi_for(dataset, K)`` to follow ``MCLOSS_XI``.

    Masks come from ``generator`` (attribute or constructor argument) or, by default, the
    global RNG, which the training loop seeds and checkpoints.
    Parts: ce, mc_dis (L_dis), mc_div_loss (1 - div / xi), mc_diversity (div itself, in [1, xi]).
    """

    name = "mcloss"
    paper_name = "MC-Loss"
    hparam_types: ClassVar[dict[str, type]] = {"xi": int}
    summary = "CE + alpha_dis L_dis + beta_div (1 - div/xi); xi=None: max(3, 512 // K) (MCLOSS_XI)"

    def __init__(
        self,
        num_classes: int,
        generator: torch.Generator | None = None,
        *,
        xi: int | None = None,
        mask_fraction: float = 0.5,
        alpha_dis: float = 1.5,
        beta_div: float = 20.0,
    ) -> None:
        super().__init__(num_classes, **self.given(locals()))
        if self.xi is None:
            self.xi = mcloss_xi_for(None, self.num_classes)
            self.hparams["xi"] = self.xi
        require(self.xi >= 1, f"xi must be >= 1, got {self.xi}")
        require(0 <= self.mask_fraction < 1, f"mask_fraction must be in [0, 1), got {self.mask_fraction}")
        require(self.alpha_dis >= 0 and self.beta_div >= 0, "alpha_dis and beta_div must be >= 0")
        self.generator = generator

    @property
    def needs(self) -> ModelNeeds:
        return ModelNeeds(channels_per_class=self.xi)

    def forward(self, output: ModelOutput, labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        fmap = output.feature_map
        mask = mc_channel_mask(self.num_classes, self.xi, self.mask_fraction, self.generator, fmap.device)
        dis = mc_discriminality(fmap, labels, self.num_classes, self.xi, mask)
        diversity = mc_diversity(fmap, self.num_classes, self.xi)
        div_loss = 1.0 - diversity / self.xi
        ce = F.cross_entropy(as_compute(logits), labels)
        loss = ce + self.alpha_dis * dis + self.beta_div * div_loss
        return LossOutput(loss=loss, parts=detached(ce=ce, mc_dis=dis, mc_div_loss=div_loss, mc_diversity=diversity))
