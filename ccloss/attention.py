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

__all__ = ["ChannelAttention"]


class ChannelAttention(nn.Module):
    """SE block returning the re-weighted map and the attention vectors.

    Args:
        channels: number of channels C of the input map.
        reduction: bottleneck ratio r; the hidden layer has max(1, C // r) units.

    ``forward(x)`` takes B x C x H x W and returns ``(x * a[..., None, None], a)`` with
    ``a`` of shape B x C and every entry in (0, 1).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if int(channels) < 1:
            raise ValueError(f"ChannelAttention needs channels >= 1, got {channels}")
        if int(reduction) < 1:
            raise ValueError(f"ChannelAttention needs reduction >= 1, got {reduction}")
        self.channels = int(channels)
        self.reduction = int(reduction)
        hidden = max(1, self.channels // self.reduction)
        self.fc1 = nn.Linear(self.channels, hidden)
        self.fc2 = nn.Linear(hidden, self.channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"ChannelAttention({self.channels}) expects a B x {self.channels} x H x W map, "
                f"got shape {tuple(x.shape)}"
            )
        squeezed = x.mean(dim=(2, 3))
        attention = torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed))))
        return x * attention[:, :, None, None], attention

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduction={self.reduction}"
