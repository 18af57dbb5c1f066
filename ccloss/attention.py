"""The channel attention module (CAM) of CC-Loss: a squeeze-and-excitation block.

a = sigmoid(W2 relu(W1 GAP(F)))  and  F' = F * a   (Hu et al., "Squeeze-and-Excitation
Networks", CVPR 2018). The CC-Loss paper places a CAM after the last convolutional stage and
applies its loss to the vectors ``a``; a third-party reading of the paper says the CAM is an SE
block, which is the reconstruction used here (see the README, "What the paper leaves open").
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ACTIVATIONS", "CAM_MIN_HIDDEN", "ChannelAttention"]

#: Hidden-layer activations of the SE block. ``relu`` is Hu et al.'s; ``leaky_relu`` (slope 0.1)
#: keeps a gradient for negative inputs, so a hidden unit cannot die (stop firing for every
#: input and never recover), which is how CC-Loss's attention collapsed (docs/study_cc_default.md).
ACTIVATIONS = ("relu", "leaky_relu")
LEAKY_SLOPE = 0.1
#: The models' floor on the SE block's hidden width: 32 is what r = 16 gives at C = 512; at width 0.25
#: (C = 128) it replaces 8 units, which could all die in the first epoch (docs/study_cc_default.md).
CAM_MIN_HIDDEN = 32


class ChannelAttention(nn.Module):
    """SE block returning the re-weighted map and the attention vectors.

    Args:
        channels: number of channels C of the input map.
        reduction: bottleneck ratio r; the hidden layer has max(min_hidden, C // r) units.
        activation: ``relu`` (SE as published) or ``leaky_relu`` (negative slope 0.1).
        min_hidden: a floor on the hidden width (1: none, SE as published). 32 is what r = 16 gives at
            C = 512, and what :func:`ccloss.models.build_model` uses by default.

    ``forward(x)`` takes B x C x H x W and returns ``(x * a[..., None, None], a)`` with
    ``a`` of shape B x C and every entry in (0, 1).
    """

    def __init__(self, channels: int, reduction: int = 16, activation: str = "relu", min_hidden: int = 1) -> None:
        super().__init__()
        if int(channels) < 1:
            raise ValueError(f"ChannelAttention needs channels >= 1, got {channels}")
        if int(reduction) < 1:
            raise ValueError(f"ChannelAttention needs reduction >= 1, got {reduction}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown SE activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        if isinstance(min_hidden, bool) or int(min_hidden) != min_hidden or int(min_hidden) < 1:
            raise ValueError(f"min_hidden must be an integer >= 1, got {min_hidden!r}")
        self.channels = int(channels)
        self.reduction = int(reduction)
        self.activation = activation
        self.min_hidden = int(min_hidden)
        self.hidden = max(self.min_hidden, self.channels // self.reduction)
        self.fc1 = nn.Linear(self.channels, self.hidden)
        self.fc2 = nn.Linear(self.hidden, self.channels)

    def hidden_activations(self, squeezed: torch.Tensor) -> torch.Tensor:
        """The SE block's hidden layer, relu(W1 z + b1) (or leaky): B x hidden."""
        pre = self.fc1(squeezed)
        return F.relu(pre) if self.activation == "relu" else F.leaky_relu(pre, LEAKY_SLOPE)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"ChannelAttention({self.channels}) expects a B x {self.channels} x H x W map, "
                f"got shape {tuple(x.shape)}"
            )
        squeezed = x.mean(dim=(2, 3))
        attention = torch.sigmoid(self.fc2(self.hidden_activations(squeezed)))
        return x * attention[:, :, None, None], attention

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, reduction={self.reduction}, hidden={self.hidden}, "
            f"activation={self.activation!r}"
        )
