"""The channel attention module (CAM) of CC-Loss: a squeeze-and-excitation block.

a = sigmoid(W2 relu(W1 GAP(F))), F' = F * a (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018), after the
last stage; CC-Loss takes the vectors ``a`` (an SE block, as reconstructed: docs/paper_choices.md). For B x N x C
tokens the squeeze is the mean over N. Range: in float32 sigmoid rounds to exactly 1 above about 17 and to 0 below
about -90 to -104, so a lies in [0, 1], not (0, 1) (efficientnet_b0: 230 evaluated entries at 0 or 1); nothing
downstream divides by a or 1 - a.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ACTIVATIONS", "CAM_MIN_HIDDEN", "ChannelAttention"]

#: The hidden activation: ``relu`` is Hu et al.'s; ``leaky_relu`` (slope 0.1) cannot die (docs/study_cc_default.md).
ACTIVATIONS = ("relu", "leaky_relu")
LEAKY_SLOPE = 0.1
#: Floor on the hidden width (32: r = 16 at C = 512; 8 units at C = 128 can all die). 1: the block as published.
CAM_MIN_HIDDEN = 32


class ChannelAttention(nn.Module):
    """SE block: ``forward(x)`` (B x C x H x W, or B x N x C) returns ``x * a`` and ``a`` (B x C, in [0, 1]); the
    hidden layer has max(``min_hidden``, C // ``reduction``) units, ``relu`` (as published) or ``leaky_relu``."""

    def __init__(self, channels: int, reduction: int = 16, activation: str = "relu", min_hidden: int = CAM_MIN_HIDDEN):
        super().__init__()
        if int(channels) < 1 or int(reduction) < 1:
            raise ValueError(f"ChannelAttention needs channels >= 1 and reduction >= 1, got {channels}, {reduction}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown SE activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        if isinstance(min_hidden, bool) or int(min_hidden) != min_hidden or int(min_hidden) < 1:
            raise ValueError(f"min_hidden must be an integer >= 1, got {min_hidden!r}")
        self.channels, self.reduction, self.activation = int(channels), int(reduction), activation
        self.hidden = max(int(min_hidden), self.channels // self.reduction)
        self.fc1, self.fc2 = nn.Linear(self.channels, self.hidden), nn.Linear(self.hidden, self.channels)

    def hidden_activations(self, squeezed: torch.Tensor) -> torch.Tensor:
        """The SE block's hidden layer, relu(W1 z + b1) (or leaky): B x hidden."""
        pre = self.fc1(squeezed)
        return F.relu(pre) if self.activation == "relu" else F.leaky_relu(pre, LEAKY_SLOPE)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.channels
        maps, tokens = x.dim() == 4 and x.shape[1] == c, x.dim() == 3 and x.shape[2] == c
        if not (maps or tokens):
            raise ValueError(f"ChannelAttention({c}) expects a B x {c} x H x W map or B x N x {c} tokens, "
                             f"got shape {tuple(x.shape)}")  # fmt: skip
        attention = torch.sigmoid(self.fc2(self.hidden_activations(x.mean(dim=(2, 3)) if maps else x.mean(dim=1))))
        return (x * attention[:, :, None, None] if maps else x * attention[:, None, :]), attention

    def extra_repr(self) -> str:
        c, r, h, a = self.channels, self.reduction, self.hidden, self.activation
        return f"channels={c}, reduction={r}, hidden={h}, activation={a!r}"
