"""Backbones: shapes, parameter counts against torchvision, CAM, heads, pretrained loading."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18, vgg16_bn

from ccloss import ChannelAttention, TrainConfig, build_model
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
@pytest.mark.parametrize(
    "stem,size,spatial", [("cifar", 32, {"resnet18": 4, "vgg16": 2}), ("imagenet", 64, {"resnet18": 2, "vgg16": 2})]
)
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
    expected = torch.sigmoid(
        cam.fc2.weight @ torch.relu(cam.fc1.weight @ z.T + cam.fc1.bias[:, None]) + cam.fc2.bias[:, None]
    ).T
    torch.testing.assert_close(a, expected)
    torch.testing.assert_close(y, x * expected[:, :, None, None])
    assert cam.fc1.out_features == 32  # the default floor: max(32, 32 // 4)
    assert ChannelAttention(32, reduction=4, min_hidden=1).fc1.out_features == 8  # the SE block as published


def test_one_se_floor_default_everywhere():
    """Building the CAM yourself gives the block every model gets (issue 20)."""
    from ccloss.attention import CAM_MIN_HIDDEN

    model = build_model("resnet18", 10, width_mult=0.25)
    assert ChannelAttention(model.channels).hidden == model.cam.hidden == max(CAM_MIN_HIDDEN, 128 // 16)
    assert TrainConfig().cam_min_hidden == CAM_MIN_HIDDEN
    assert build_model("vgg16", 10, width_mult=0.25).cam.hidden == ChannelAttention(128).hidden


def test_channel_attention_on_tokens_pools_over_them():
    """B x N x C tokens (a ViT's): the squeeze is the mean over the N tokens, every token re-weighted."""
    torch.manual_seed(2)
    cam = ChannelAttention(12, reduction=4, min_hidden=1)
    tokens = torch.randn(3, 7, 12)
    y, a = cam(tokens)
    z = tokens.mean(dim=1)
    expected = torch.sigmoid(cam.fc2(torch.relu(cam.fc1(z))))
    torch.testing.assert_close(a, expected)
    torch.testing.assert_close(y, tokens * expected[:, None, :])
    as_map = tokens.transpose(1, 2)[..., None]  # B x C x N x 1: the same numbers as a map
    torch.testing.assert_close(cam(as_map)[1], a)


def test_channel_attention_bad_input():
    with pytest.raises(ValueError, match="B x 8 x H x W"):
        ChannelAttention(8)(torch.randn(2, 8))
    with pytest.raises(ValueError, match="B x 8 x H x W"):
        ChannelAttention(8)(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match="or B x N x 8 tokens, got shape \\(2, 5, 4\\)"):
        ChannelAttention(8)(torch.randn(2, 5, 4))
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


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"backbone": "resnet50"}, "resnet18, vgg16"),
        ({"stem": "tiny"}, "cifar, imagenet"),
        ({"head": "arc"}, "linear, cosine"),
        ({"in_channels": 2}, "in_channels"),
        ({"width_mult": 0}, "width_mult"),
        ({"num_classes": 1}, "num_classes"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"backbone": "resnet18", "num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_model(args.pop("backbone"), args.pop("num_classes"), **args)


# --------------------------------------------------------------------------------------------
# The SE block's activation and hidden-width floor, and how TrainConfig reaches them
# --------------------------------------------------------------------------------------------


def se_by_hand(cam, x, activation):
    """The SE block written out: sigmoid(W2 act(W1 GAP(x) + b1) + b2), act = relu or leaky (slope 0.1)."""
    z = x.mean(dim=(2, 3))
    pre = z @ cam.fc1.weight.T + cam.fc1.bias
    hidden = torch.where(pre > 0, pre, torch.zeros_like(pre) if activation == "relu" else 0.1 * pre)
    return torch.sigmoid(hidden @ cam.fc2.weight.T + cam.fc2.bias)


@pytest.mark.parametrize(
    "channels, reduction, min_hidden, hidden",
    [
        (512, 16, 1, 32),
        (128, 16, 1, 8),
        (128, 16, 32, 32),
        (1024, 16, 32, 64),
        (32, 16, 1, 2),
        (8, 16, 1, 1),
        (8, 16, 4, 4),
        (64, 4, 16, 16),
        (64, 4, 17, 17),
        (3, 1, 1, 3),
    ],
)
def test_se_hidden_width_is_max_of_reduction_and_floor(channels, reduction, min_hidden, hidden):
    assert max(channels // reduction, min_hidden) == hidden  # the rule, spelled out
    cam = ChannelAttention(channels, reduction=reduction, min_hidden=min_hidden)
    assert cam.hidden == hidden
    assert (cam.fc1.in_features, cam.fc1.out_features) == (channels, hidden)
    assert (cam.fc2.in_features, cam.fc2.out_features) == (hidden, channels)
    _, a = cam(torch.randn(2, channels, 3, 3))
    assert a.shape == (2, channels)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_se_forward_matches_hand_computation(activation):
    torch.manual_seed(3)
    cam = ChannelAttention(16, reduction=4, activation=activation, min_hidden=6)
    x = torch.randn(5, 16, 3, 4)
    y, a = cam(x)
    expected = se_by_hand(cam, x, activation)
    torch.testing.assert_close(a, expected)
    torch.testing.assert_close(y, x * expected[:, :, None, None])
    pre = cam.fc1(x.mean(dim=(2, 3)))
    slope = 0.0 if activation == "relu" else 0.1
    torch.testing.assert_close(cam.hidden_activations(x.mean(dim=(2, 3))), torch.nn.functional.leaky_relu(pre, slope))
    assert f"activation={activation!r}" in repr(cam) and "hidden=6" in repr(cam)


def test_leaky_and_relu_differ_only_where_a_unit_is_negative():
    torch.manual_seed(4)
    relu = ChannelAttention(8, reduction=2)
    leaky = ChannelAttention(8, reduction=2, activation="leaky_relu")
    leaky.load_state_dict(relu.state_dict())
    x = torch.randn(6, 8, 2, 2)
    with torch.no_grad():
        relu.fc1.bias.fill_(100.0)  # every hidden unit positive: the two agree
        leaky.fc1.bias.fill_(100.0)
        torch.testing.assert_close(relu(x)[1], leaky(x)[1])
        relu.fc1.bias.fill_(-100.0)  # every hidden unit negative: they differ
        leaky.fc1.bias.fill_(-100.0)
        assert not torch.allclose(relu(x)[1], leaky(x)[1])


def test_leaky_keeps_a_gradient_for_a_unit_negative_on_every_input():
    """A relu unit whose pre-activation is negative everywhere gets no gradient (it is dead for good);
    with leaky_relu it still learns."""
    grads = {}
    for activation in ("relu", "leaky_relu"):
        torch.manual_seed(5)
        cam = ChannelAttention(8, reduction=2, activation=activation)
        with torch.no_grad():
            cam.fc1.bias[0] = -1e3  # unit 0 is negative on every input
        _, a = cam(torch.rand(4, 8, 3, 3))
        a.sum().backward()
        grads[activation] = cam.fc1.weight.grad[0].abs().sum().item()
    assert grads["relu"] == 0.0
    assert grads["leaky_relu"] > 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"activation": "gelu"}, "unknown SE activation 'gelu'; valid: relu, leaky_relu"),
        ({"activation": "Leaky_ReLU"}, "valid: relu, leaky_relu"),
        ({"min_hidden": 0}, "min_hidden must be an integer >= 1, got 0"),
        ({"min_hidden": -3}, "min_hidden must be an integer >= 1"),
        ({"min_hidden": 2.5}, "min_hidden must be an integer >= 1, got 2.5"),
        ({"min_hidden": True}, "min_hidden must be an integer >= 1, got True"),
    ],
)
def test_se_bad_options(kwargs, message):
    with pytest.raises(ValueError) as error:
        ChannelAttention(16, **kwargs)
    assert message in str(error.value)


@pytest.mark.parametrize("backbone", ["resnet18", "vgg16"])
def test_build_model_passes_activation_and_floor_to_the_cam(backbone):
    model = build_model(backbone, 10, in_channels=1, width_mult=0.125, cam_activation="leaky_relu", cam_min_hidden=24)
    assert model.backbone.out_channels == 64
    assert model.cam.activation == "leaky_relu" and model.cam.hidden == 24  # 64 // 16 = 4 < 24
    default = build_model(backbone, 10, in_channels=1, width_mult=0.125)
    assert default.cam.activation == "relu" and default.cam.hidden == 32  # the models' floor: max(32, 4)
    published = build_model(backbone, 10, in_channels=1, width_mult=0.125, cam_min_hidden=1)
    assert published.cam.hidden == 64 // 16  # SE as published: C // r
    full = build_model(backbone, 10, width_mult=1.0)
    assert full.cam.hidden == 512 // 16 == 32  # at full width the floor changes nothing
    with pytest.raises(ValueError, match="valid: relu, leaky_relu"):
        build_model(backbone, 10, width_mult=0.125, cam_activation="swish")
    with pytest.raises(ValueError, match="min_hidden"):
        build_model(backbone, 10, width_mult=0.125, cam_min_hidden=0)


def test_build_model_leaky_forward_is_the_hand_written_se():
    torch.manual_seed(6)
    model = build_model("resnet18", 5, in_channels=1, width_mult=0.125, cam_activation="leaky_relu", cam_min_hidden=12)
    model.eval()
    x = torch.randn(3, 1, 16, 16)
    out = model(x)
    raw = model.backbone(x)
    torch.testing.assert_close(out.attention, se_by_hand(model.cam, raw, "leaky_relu"))


def test_build_for_config_honours_the_cam_fields():
    from ccloss.config import TrainConfig, build_for_config
    from ccloss.data import dataset_info

    info = dataset_info("digits")
    config = TrainConfig(width_mult=0.125, cam_activation="leaky_relu", cam_min_hidden=20)
    _, model = build_for_config(config.validate(), info, torch.device("cpu"))
    assert model.cam.activation == "leaky_relu" and model.cam.hidden == 20
    _, default = build_for_config(TrainConfig(width_mult=0.125), info, torch.device("cpu"))
    assert default.cam.activation == "relu" and default.cam.hidden == 32  # max(32, 64 // 16)
    # a loss that changes the model (MC-Loss: classes x xi channels) keeps the CAM settings
    _, mc = build_for_config(TrainConfig(width_mult=0.125, loss="mcloss", cam_min_hidden=50), info, torch.device("cpu"))
    assert mc.cam is not None and mc.cam.hidden == max(mc.backbone.out_channels // 16, 50)
    # the saved config rebuilds the same architecture (what load_run does)
    again = TrainConfig.from_dict(config.to_dict())
    assert (again.cam_activation, again.cam_min_hidden) == ("leaky_relu", 20)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"cam_activation": "tanh"}, "unknown cam_activation 'tanh'; valid: relu, leaky_relu"),
        ({"cam_activation": None}, "unknown cam_activation None; valid: relu, leaky_relu"),
        ({"cam_min_hidden": 0}, "cam_min_hidden must be a positive integer, got 0"),
        ({"cam_min_hidden": 8.0}, "cam_min_hidden must be a positive integer"),
        ({"cam_min_hidden": True}, "cam_min_hidden must be a positive integer"),
    ],
)
def test_train_config_validates_the_cam_fields(fields, message):
    from ccloss.config import TrainConfig

    with pytest.raises(ValueError) as error:
        TrainConfig(**fields).validate()
    assert message in str(error.value)


def test_attention_takes_values_in_the_closed_interval_in_float32():
    """sigmoid saturates in float32: exactly 1.0 for large inputs, exactly 0.0 for very negative ones, so the
    attention lies in [0, 1], not (0, 1) (attention.py's docstring)."""
    cam = ChannelAttention(4, reduction=1, min_hidden=1)
    with torch.no_grad():
        cam.fc2.weight.zero_()
        cam.fc2.bias.copy_(torch.tensor([40.0, -200.0, 0.0, 16.0]))
    _, a = cam(torch.randn(3, 4, 2, 2))
    assert (a[:, 0] == 1.0).all() and (a[:, 1] == 0.0).all() and (a[:, 2] == 0.5).all() and (a[:, 3] < 1.0).all()
    assert torch.isfinite(a).all() and a.min() >= 0 and a.max() <= 1
