"""The channel attention module (CAM) of CC-Loss: a squeeze-and-excitation block.

a = sigmoid(W2 relu(W1 GAP(F)))  and  F' = F * a   (Hu et al., "Squeeze-and-Excitation
Networks", CVPR 2018). The CC-Loss paper places a CAM after the last convolutional stage and
applies its loss to the vectors ``a``; a third-party reading of the paper says the CAM is an SE
block, which is the reconstruction used here (docs/paper_choices.md). For a transformer's B x N x C
tokens the squeeze is the mean over the N tokens and every token is re-weighted by the same ``a``.
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
#: The floor on the SE block's hidden width, the default everywhere: 32 is what r = 16 gives at C = 512;
#: at width 0.25 (C = 128) it replaces 8 units, which could all die in the first epoch
#: (docs/study_cc_default.md). ``min_hidden=1`` gives the block as published.
CAM_MIN_HIDDEN = 32


class ChannelAttention(nn.Module):
    """SE block returning the re-weighted map and the attention vectors.

    Args:
        channels: number of channels C of the input map.
        reduction: bottleneck ratio r; the hidden layer has max(min_hidden, C // r) units.
        activation: ``relu`` (SE as published) or ``leaky_relu`` (negative slope 0.1).
        min_hidden: a floor on the hidden width (:data:`CAM_MIN_HIDDEN` = 32, what r = 16 gives at
            C = 512; 1: none, the SE block as published).

    ``forward(x)`` takes a B x C x H x W map (or B x N x C tokens) and returns the re-weighted input
    ``x * a`` and ``a``, of shape B x C with every entry in (0, 1).
    """

    def __init__(
        self, channels: int, reduction: int = 16, activation: str = "relu", min_hidden: int = CAM_MIN_HIDDEN
    ) -> None:
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
        maps, tokens = x.dim() == 4 and x.shape[1] == self.channels, x.dim() == 3 and x.shape[2] == self.channels
        if not (maps or tokens):
            raise ValueError(
                f"ChannelAttention({self.channels}) expects a B x {self.channels} x H x W map or B x N x "
                f"{self.channels} tokens, got shape {tuple(x.shape)}"
            )
        squeezed = x.mean(dim=(2, 3)) if maps else x.mean(dim=1)
        attention = torch.sigmoid(self.fc2(self.hidden_activations(squeezed)))
        return (x * attention[:, :, None, None] if maps else x * attention[:, None, :]), attention

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, reduction={self.reduction}, hidden={self.hidden}, "
            f"activation={self.activation!r}"
        )
