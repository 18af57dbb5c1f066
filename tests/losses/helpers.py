"""Builders shared by the loss tests: a hand-made ModelOutput and labels with every class present."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ccloss.models import ModelOutput

K, C, B, H, W = 5, 8, 12, 4, 4


def make_output(
    *, batch=B, classes=K, channels=C, cam=True, cosine=True, fmap_channels=None, seed=0, dtype=torch.float64
):
    """A hand-built ModelOutput whose tensors are leaves (requires_grad) and consistent:
    logits = features @ head_weight.T (the cosine head when ``cosine``)."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, channels, generator=g, dtype=dtype).requires_grad_()
    raw_w = torch.randn(classes, channels, generator=g, dtype=dtype)
    head_weight = (F.normalize(raw_w, dim=1) if cosine else raw_w).requires_grad_()
    logits = features @ head_weight.T
    attention = torch.rand(batch, channels, generator=g, dtype=dtype).requires_grad_() if cam else None
    fc = fmap_channels if fmap_channels is not None else channels
    feature_map = torch.randn(batch, fc, H, W, generator=g, dtype=dtype).relu().requires_grad_()
    return ModelOutput(
        logits=logits, attention=attention, features=features, feature_map=feature_map, head_weight=head_weight
    )


def make_labels(batch=B, classes=K, seed=1):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (batch,), generator=g)
    labels[:classes] = torch.arange(classes)  # every class present
    return labels
