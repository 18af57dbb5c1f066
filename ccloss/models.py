"""``backbone -> [CAM] -> global average pool -> head`` around any trunk, and VGG16-BN / ResNet18 trunks named as
torchvision's (ImageNet weights load by name). Open choices (docs/paper_choices.md): the CAM sits after the last
stage, also at test time; VGG16 has one linear head; its ``cifar`` stem drops the last max-pool (32x32: 2x2 left).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .attention import CAM_MIN_HIDDEN, ChannelAttention
from .pretrained import load_pretrained

__all__ = ["BACKBONES", "STEMS", "HEADS", "ModelOutput", "CCModel", "CosineHead", "backbone_channels", "build_model"]

BACKBONES = ("resnet18", "vgg16")
STEMS = ("cifar", "imagenet")
HEADS = ("linear", "cosine")

_RESNET18_WIDTHS = (64, 128, 256, 512)
# torchvision's VGG16 configuration "D"; "M" is a 2x2 max-pool.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


@dataclass
class ModelOutput:
    """What a forward pass returns (a small object, so losses take what they need)."""

    logits: torch.Tensor  #: B x K; for the cosine head |x| cos(theta_j)
    attention: torch.Tensor | None  #: B x C channel-attention vectors in [0, 1], None without CAM
    features: torch.Tensor  #: B x C pooled features (the head's input, after CAM re-weighting)
    feature_map: torch.Tensor  #: the backbone's B x C x H x W map (or B x N x C tokens), CAM re-weighted
    head_weight: torch.Tensor  #: K x C class weights as the head uses them


def _scaled(channels: int, width_mult: float) -> int:
    return max(1, int(round(channels * width_mult)))


class BasicBlock(nn.Module):
    """ResNet basic block (He et al., CVPR 2016), named as in torchvision."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + identity)


class ResNet18Backbone(nn.Module):
    """ResNet18 without its head. ``cifar`` stem: 3x3 conv, stride 1, no max-pool."""

    def __init__(self, in_channels: int, width_mult: float, stem: str, last_stage_width: int | None) -> None:
        super().__init__()
        widths = [_scaled(c, width_mult) for c in _RESNET18_WIDTHS]
        if last_stage_width is not None:
            widths[3] = int(last_stage_width)
        big = stem == "imagenet"
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7 if big else 3, 2 if big else 1, 3 if big else 1, bias=False)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if big else nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        planes = widths[0]
        for index, (width, stride) in enumerate(zip(widths, (1, 2, 2, 2)), start=1):
            setattr(self, f"layer{index}", nn.Sequential(BasicBlock(planes, width, stride), BasicBlock(width, width)))
            planes = width
        self.out_channels = planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class VGG16Backbone(nn.Module):
    """VGG16 with batch norm (torchvision ``vgg16_bn`` ``features``); ``cifar`` drops the last pool."""

    def __init__(self, in_channels: int, width_mult: float, stem: str, last_stage_width: int | None) -> None:
        super().__init__()
        cfg = list(_VGG16_CFG if stem == "imagenet" else _VGG16_CFG[:-1])
        conv_positions = [i for i, v in enumerate(cfg) if v != "M"]
        layers: list[nn.Module] = []
        channels = in_channels
        for position, value in enumerate(cfg):
            if value == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            last = last_stage_width is not None and position in conv_positions[-3:]
            width = int(last_stage_width) if last else _scaled(int(value), width_mult)
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class CosineHead(nn.Module):
    """Bias-free, unit-norm class weights: logit_j = x . w_j / ||w_j|| = |x| cos(theta_j) (A-Softmax, ICAL)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def normalized_weight(self) -> torch.Tensor:
        return F.normalize(self.weight, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.normalized_weight())


def backbone_channels(backbone: nn.Module, channels: int | None = None) -> int:
    """C of a backbone's output: ``channels``, else its ``out_channels`` (ours) or ``num_features`` (timm's)."""
    for value in (channels, getattr(backbone, "out_channels", None), getattr(backbone, "num_features", None)):
        if value is not None:
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ValueError(f"the backbone's channel count must be a positive integer, got {value!r}")
            return int(value)
    fix = "pass channels=C (of its B x C x H x W output or B x N x C tokens), or give it an out_channels attribute"
    raise ValueError(f"cannot tell how many channels {type(backbone).__name__} returns: {fix}")


class CCModel(nn.Module):
    """backbone -> optional :class:`ChannelAttention` -> average pool -> head, returning a :class:`ModelOutput`; the
    backbone gives B x C x H x W maps or B x N x C tokens, C = ``channels``, ``out_channels`` or ``num_features``."""

    # fmt: off
    def __init__(
        self, backbone: nn.Module, num_classes: int, *, channels: int | None = None, cam: bool = True,
        head: str = "linear", reduction: int = 16, cam_activation: str = "relu", cam_min_hidden: int = CAM_MIN_HIDDEN,
    ) -> None:
        # fmt: on
        super().__init__()
        check_classes(num_classes)
        self.backbone = backbone
        self.channels = backbone_channels(backbone, channels)
        self.cam = ChannelAttention(self.channels, reduction, cam_activation, cam_min_hidden) if cam else None
        cosine = _choice(head, HEADS, "head") == "cosine"
        self.head = CosineHead(self.channels, num_classes) if cosine else nn.Linear(self.channels, num_classes)
        self.num_classes = int(num_classes)

    def head_weight(self) -> torch.Tensor:
        return self.head.normalized_weight() if isinstance(self.head, CosineHead) else self.head.weight

    def forward(self, x: torch.Tensor) -> ModelOutput:
        feature_map = self.backbone(x)
        tokens = feature_map.dim() == 3
        if feature_map.shape[2 if tokens else 1] != self.channels or feature_map.dim() not in (3, 4):
            shape, c = tuple(feature_map.shape), self.channels
            expected = f"B x {c} x H x W maps or B x N x {c} tokens (channels={c})"
            raise ValueError(f"the backbone returned shape {shape}; CCModel was built for {expected}")
        attention = None
        if self.cam is not None:
            feature_map, attention = self.cam(feature_map)
        features = feature_map.mean(dim=1) if tokens else feature_map.mean(dim=(2, 3))
        return ModelOutput(self.head(features), attention, features, feature_map, self.head_weight())


def _choice(value: str, valid: tuple[str, ...], what: str) -> str:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid {what}s: {', '.join(valid)}")
    return value


def check_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")


# fmt: off
def build_model(
    backbone: str | nn.Module = "resnet18", num_classes: int = 10, *, channels: int | None = None, in_channels: int = 3,
    cam: bool = True, width_mult: float = 1.0, stem: str = "cifar", head: str = "linear",
    last_stage_width: int | None = None, pretrained: None | str | os.PathLike = None, reduction: int = 16,
    cam_activation: str = "relu", cam_min_hidden: int = CAM_MIN_HIDDEN,
) -> CCModel:
    # fmt: on
    """ResNet18 or VGG16-BN (+CAM), or :class:`CCModel` around your module. ``width_mult`` scales every stage (1.0:
    torchvision's), ``last_stage_width`` the last (MC-Loss: K x xi); ``pretrained``: a state-dict path or "imagenet"."""
    options = dict(
        cam=cam, head=head, reduction=reduction, cam_activation=cam_activation, cam_min_hidden=cam_min_hidden
    )
    if isinstance(backbone, nn.Module):
        if pretrained is not None:
            raise ValueError("pretrained= loads the built-in backbones' weights: load your module's own before")
        return CCModel(backbone, num_classes, channels=channels, **options)
    _choice(backbone, BACKBONES, "backbone")
    _choice(stem, STEMS, "stem")
    check_classes(num_classes)
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 (grey) or 3 (RGB), got {in_channels!r}")
    if not width_mult > 0:
        raise ValueError(f"width_mult must be > 0 (1.0 = standard widths), got {width_mult!r}")
    if last_stage_width is not None and int(last_stage_width) < 1:
        raise ValueError(f"last_stage_width must be a positive integer, got {last_stage_width!r}")
    backbone_class = ResNet18Backbone if backbone == "resnet18" else VGG16Backbone
    trunk = backbone_class(in_channels, width_mult, stem, last_stage_width)
    model = CCModel(trunk, int(num_classes), channels=channels, **options)
    if pretrained is not None:
        load_pretrained(model, backbone, pretrained)
    return model
