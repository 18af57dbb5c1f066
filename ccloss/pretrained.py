"""ImageNet or saved weights for the backbones of :func:`ccloss.models.build_model`, loaded by name."""

from __future__ import annotations

import os
import zipfile

import torch
from torch import nn

from .runtime import warn


def check_weights_file(source: str | os.PathLike) -> None:
    """A one-line FileNotFoundError / ValueError unless ``source`` is "imagenet" or a torch.save file (a zip)."""
    path, advice = os.fspath(source), "give a state dict saved with torch.save, or 'imagenet'"
    if path == "imagenet":
        return
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--pretrained {path}: pretrained weights not found; {advice}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"--pretrained {path}: not a PyTorch weights file (truncated, or something else); {advice}")


def _imagenet_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    from torchvision import models as tv_models

    weights = tv_models.ResNet18_Weights if backbone == "resnet18" else tv_models.VGG16_BN_Weights
    try:
        return weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as error:  # offline, proxy, ...
        raise RuntimeError(f"could not download torchvision's ImageNet weights for {backbone} ({error}). Download "
                           f"torchvision.models.{weights.IMAGENET1K_V1} on a machine with internet and pass the saved "
                           "state dict file as pretrained=PATH (CLI: --pretrained PATH).") from None  # fmt: skip


def load_pretrained(model: nn.Module, backbone: str, source: str | os.PathLike) -> list[str]:
    """Load ``source`` by name where shapes agree, never the heads (grey inputs: first conv summed); names loaded."""
    check_weights_file(source)
    if os.fspath(source) == "imagenet":
        state = _imagenet_state_dict(backbone)
    else:
        try:
            state = torch.load(source, map_location="cpu", weights_only=True)
        except Exception:
            raise ValueError(f"--pretrained {source}: cannot be read as a state dict (truncated or garbled)") from None
        state = state["model"] if isinstance(state, dict) and isinstance(state.get("model"), dict) else state
    if not any(key.startswith(("backbone.", "cam.", "head.")) for key in state):
        state = {f"backbone.{k}": v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
    own = model.state_dict()
    first_conv = "backbone.conv1.weight" if backbone == "resnet18" else "backbone.features.0.weight"
    if first_conv in state and first_conv in own and state[first_conv].shape[1] == 3 and own[first_conv].shape[1] == 1:
        state[first_conv] = state[first_conv].sum(dim=1, keepdim=True)
    loadable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not any(k.startswith("backbone.") and not k.endswith("num_batches_tracked") for k in loadable):
        hint = "check backbone, width_mult and last_stage_width: ImageNet weights need width_mult=1.0"
        raise ValueError(f"none of the {len(state)} pretrained tensors fits this model ({hint})")
    skipped = sorted(k for k in state if k not in loadable)
    if skipped:
        more = " ..." if len(skipped) > 8 else ""
        warn(f"pretrained: {len(skipped)} tensors skipped (name or shape differ): {', '.join(skipped[:8])}{more}")
    model.load_state_dict(loadable, strict=False)
    return sorted(loadable)
