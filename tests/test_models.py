"""Backbones: shapes, parameter counts against torchvision, CAM, heads, pretrained loading."""
import pytest
import torch
from torch import nn
from torchvision.models import resnet18, vgg16_bn

from ccloss import ChannelAttention, build_model
from ccloss.models import CosineHead


def conv_params(model: nn.Module) -> int:
    return sum(p.numel() for m in model.modules() if isinstance(m, nn.Conv2d) for p in m.parameters())


@pytest.mark.parametrize("backbone,reference", [("resnet18", resnet18), ("vgg16", vgg16_bn)])
def test_conv_parameter_count_equals_torchvision(backbone, reference):
    ours = build_model(backbone, 1000, in_channels=3, stem="imagenet", width_mult=1.0, cam=False)
    assert conv_params(ours) == conv_params(reference())


def test_width_mult_scales_channels():
    model = build_model("resnet18", 10, width_mult=0.25, cam=False)
    assert model.backbone.out_channels == 128
    assert model.backbone.layer1[0].conv1.out_channels == 16
    assert conv_params(model) < conv_params(build_model("resnet18", 10, cam=False)) / 10


@pytest.mark.parametrize("backbone", ["resnet18", "vgg16"])
@pytest.mark.parametrize("stem,size,spatial", [("cifar", 32, {"resnet18": 4, "vgg16": 2}), ("imagenet", 64, {"resnet18": 2, "vgg16": 2})])
@pytest.mark.parametrize("cam", [True, False])
@pytest.mark.parametrize("head", ["linear", "cosine"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_output_shapes(backbone, stem, size, spatial, cam, head, in_channels):
    model = build_model(backbone, 7, in_channels=in_channels, cam=cam, width_mult=0.125, stem=stem, head=head)
    out = model(torch.randn(3, in_channels, size, size))
    channels = model.backbone.out_channels
    assert out.logits.shape == (3, 7)
    assert out.features.shape == (3, channels)
    assert out.feature_map.shape == (3, channels, spatial[backbone], spatial[backbone])
    assert out.head_weight.shape == (7, channels)
    if cam:
        assert out.attention.shape == (3, channels)
        assert torch.all((out.attention > 0) & (out.attention < 1))
    else:
        assert out.attention is None


def test_last_stage_width_override():
    for backbone in ("resnet18", "vgg16"):
        model = build_model(backbone, 10, width_mult=0.25, last_stage_width=30, cam=False)
        out = model(torch.randn(2, 3, 32, 32))
        assert out.feature_map.shape[1] == 30


def test_cosine_head_is_norm_times_cosine():
    model = build_model("resnet18", 5, width_mult=0.125, head="cosine", cam=False)
    out = model(torch.randn(4, 3, 32, 32))
    w = model.head.weight
    cos = nn.functional.cosine_similarity(out.features[:, None, :], w[None, :, :], dim=2)
    torch.testing.assert_close(out.logits, out.features.norm(dim=1, keepdim=True) * cos, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.head_weight.norm(dim=1), torch.ones(5))
    assert isinstance(model.head, CosineHead) and not hasattr(model.head, "bias")


def test_channel_attention_matches_hand_computation():
    torch.manual_seed(0)
    cam = ChannelAttention(32, reduction=4)
    x = torch.randn(2, 32, 5, 5)
    y, a = cam(x)
    z = x.mean(dim=(2, 3))
    expected = torch.sigmoid(cam.fc2.weight @ torch.relu(cam.fc1.weight @ z.T + cam.fc1.bias[:, None]) + cam.fc2.bias[:, None]).T
    torch.testing.assert_close(a, expected)
    torch.testing.assert_close(y, x * expected[:, :, None, None])
    assert cam.fc1.out_features == 8


def test_channel_attention_bad_input():
    with pytest.raises(ValueError, match="B x 8 x H x W"):
        ChannelAttention(8)(torch.randn(2, 8))
    with pytest.raises(ValueError, match="B x 8 x H x W"):
        ChannelAttention(8)(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match="reduction"):
        ChannelAttention(8, reduction=0)


def test_pretrained_state_dict_file_loads(tmp_path):
    torch.manual_seed(1)
    source = build_model("resnet18", 10, width_mult=0.25, in_channels=1)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    target = build_model("resnet18", 10, width_mult=0.25, in_channels=1, pretrained=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_torchvision_format_state_dict_loads_with_grey_first_conv(tmp_path):
    reference = resnet18()
    path = tmp_path / "tv.pt"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18", 10, in_channels=1, stem="imagenet", pretrained=str(path))
    torch.testing.assert_close(model.backbone.conv1.weight, reference.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.backbone.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)


def test_pretrained_shape_mismatch_is_reported(tmp_path):
    path = tmp_path / "wide.pt"
    torch.save(build_model("resnet18", 10, width_mult=0.5).state_dict(), path)
    with pytest.raises(ValueError, match="none of the"):
        build_model("resnet18", 10, width_mult=0.25, pretrained=str(path))
    torch.save(build_model("resnet18", 10, width_mult=0.25, last_stage_width=64).state_dict(), path)
    with pytest.warns(UserWarning, match="skipped"):
        build_model("resnet18", 10, width_mult=0.25, pretrained=str(path))


def test_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        build_model("resnet18", 10, pretrained=str(tmp_path / "missing.pt"))
    path = tmp_path / "other.pt"
    torch.save({"something.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="none of the"):
        build_model("resnet18", 10, pretrained=str(path))


@pytest.mark.parametrize("kwargs,message", [
    ({"backbone": "resnet50"}, "resnet18, vgg16"),
    ({"stem": "tiny"}, "cifar, imagenet"),
    ({"head": "arc"}, "linear, cosine"),
    ({"in_channels": 2}, "in_channels"),
    ({"width_mult": 0}, "width_mult"),
    ({"num_classes": 1}, "num_classes"),
])
def test_bad_arguments(kwargs, message):
    args = {"backbone": "resnet18", "num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_model(args.pop("backbone"), args.pop("num_classes"), **args)


def test_channels_last_is_refused_only_where_torch_crashes():
    """The CPU guard against torch's segfault: a 1x1 strided conv with < 8 input channels."""
    from ccloss.models import channels_last_is_safe

    tiny = build_model("resnet18", num_classes=10, in_channels=1, width_mult=0.0625)  # 4-channel shortcut
    assert not channels_last_is_safe(tiny, "cpu")
    assert channels_last_is_safe(tiny, "cuda")
    assert channels_last_is_safe(build_model("resnet18", num_classes=10, in_channels=1, width_mult=0.125), "cpu")
    assert channels_last_is_safe(build_model("vgg16", num_classes=10, in_channels=1, width_mult=0.0625), "cpu")
    assert not channels_last_is_safe(nn.Sequential(nn.Conv2d(2, 4, 1, stride=2)), torch.device("cpu"))
    assert channels_last_is_safe(nn.Sequential(nn.Conv2d(2, 4, 3, stride=2)), torch.device("cpu"))
    from ccloss.models import to_channels_last

    converted, on = to_channels_last(build_model("resnet18", num_classes=10, in_channels=1, width_mult=0.125), "cpu")
    assert on and converted.cam is not None and next(converted.parameters()).is_contiguous(memory_format=torch.channels_last)
    kept, on = to_channels_last(tiny, "cpu")
    assert not on and kept is tiny and next(kept.parameters()).is_contiguous()
