"""ccloss.runtime.devices: where channels_last is safe on the CPU, and converting a model to it."""

import torch
from torch import nn

from ccloss import build_model
from ccloss.runtime.devices import channels_last_is_safe, to_channels_last


def test_channels_last_is_refused_only_where_torch_crashes():
    """The CPU guard against torch's segfault: a 1x1 strided conv with < 8 input channels."""
    tiny = build_model("resnet18", num_classes=10, in_channels=1, width_mult=0.0625)  # 4-channel shortcut
    assert not channels_last_is_safe(tiny, "cpu")
    assert channels_last_is_safe(tiny, "cuda")
    assert channels_last_is_safe(build_model("resnet18", num_classes=10, in_channels=1, width_mult=0.125), "cpu")
    assert channels_last_is_safe(build_model("vgg16", num_classes=10, in_channels=1, width_mult=0.0625), "cpu")
    assert not channels_last_is_safe(nn.Sequential(nn.Conv2d(2, 4, 1, stride=2)), torch.device("cpu"))
    assert channels_last_is_safe(nn.Sequential(nn.Conv2d(2, 4, 3, stride=2)), torch.device("cpu"))
    converted, on = to_channels_last(build_model("resnet18", num_classes=10, in_channels=1, width_mult=0.125), "cpu")
    assert (
        on
        and converted.cam is not None
        and next(converted.parameters()).is_contiguous(memory_format=torch.channels_last)
    )
    kept, on = to_channels_last(tiny, "cpu")
    assert not on and kept is tiny and next(kept.parameters()).is_contiguous()
