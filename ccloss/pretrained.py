"""ImageNet or saved weights for the backbones of :func:`ccloss.models.build_model`, loaded by name."""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn

__all__ = ["load_pretrained"]


def _imagenet_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    from torchvision import models as tv_models

    weights = (
        tv_models.ResNet18_Weights.IMAGENET1K_V1 if backbone == "resnet18" else tv_models.VGG16_BN_Weights.IMAGENET1K_V1
    )
    try:
        return weights.get_state_dict(progress=False)
    except Exception as error:  # offline, proxy, ...
        raise RuntimeError(
            f"could not download torchvision's ImageNet weights for {backbone} ({error}). Download them "
            f"on a machine with internet (torchvision.models.{weights}) and pass the saved state dict "
            f"file as pretrained=PATH (CLI: --pretrained PATH)."
        ) from None


def load_pretrained(model: nn.Module, backbone: str, source: str | os.PathLike) -> list[str]:
    """Load weights by name where shapes agree; returns the names that were loaded.

    ``source`` is ``"imagenet"`` or a path to a state dict (ours, torchvision's, or a training
    checkpoint with a ``"model"`` entry). Heads (``fc``, ``classifier``) are never taken from
    torchvision; a 3-channel first conv is summed over its input channels for grey inputs.
    """
    if str(source) == "imagenet":
        state = _imagenet_state_dict(backbone)
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"pretrained weights not found: {path!r} (give a state-dict file or 'imagenet')")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
    if not any(key.startswith(("backbone.", "cam.", "head.")) for key in state):
        state = {f"backbone.{k}": v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
    own = model.state_dict()
    first_conv = "backbone.conv1.weight" if backbone == "resnet18" else "backbone.features.0.weight"
    if first_conv in state and first_conv in own and state[first_conv].shape[1] == 3 and own[first_conv].shape[1] == 1:
        state[first_conv] = state[first_conv].sum(dim=1, keepdim=True)
    loadable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not any(k.startswith("backbone.") and not k.endswith("num_batches_tracked") for k in loadable):
        raise ValueError(
            f"none of the {len(state)} pretrained tensors fits this model (check backbone, width_mult "
            f"and last_stage_width: ImageNet weights need width_mult=1.0)"
        )
    skipped = sorted(k for k in state if k not in loadable)
    if skipped:
        warnings.warn(
            f"pretrained: {len(skipped)} tensors skipped (name or shape differ): {', '.join(skipped[:8])}"
            + (" ..." if len(skipped) > 8 else ""),
            stacklevel=2,
        )
    model.load_state_dict(loadable, strict=False)
    return sorted(loadable)
