"""ccloss.losses: the registry, build_criterion, hyperparameter checks, model_kwargs_for and
routed_hparams, and every loss on the same inputs."""

import re

import pytest
import torch

from ccloss import losses as L

from .helpers import K, make_labels, make_output


@pytest.mark.parametrize("name", list(L.LOSSES))
def test_every_loss_finite_with_gradients(name):
    xi = 2
    hparams = {"xi": xi} if name == "mcloss" else {}
    out, y = make_output(fmap_channels=K * xi, dtype=torch.float32), make_labels()
    crit = L.build_criterion(name, K, **hparams)
    result = crit(out, y, step=3)
    assert result.loss.dim() == 0 and torch.isfinite(result.loss)
    assert "ce" in result.parts and all(torch.isfinite(v) and v.dim() == 0 for v in result.parts.values())
    result.loss.backward()
    leaves = {"features": out.features, "head_weight": out.head_weight}
    if name == "cc":
        leaves["attention"] = out.attention
    if name == "mcloss":
        leaves["feature_map"] = out.feature_map
    for key, leaf in leaves.items():
        assert leaf.grad is not None, f"{name}: no gradient for {key}"
        assert torch.isfinite(leaf.grad).all(), f"{name}: non-finite gradient for {key}"
        assert leaf.grad.abs().sum() > 0, f"{name}: zero gradient for {key}"


@pytest.mark.parametrize("name", list(L.LOSSES))
def test_every_loss_under_bf16_logits(name):
    out, y = make_output(fmap_channels=K * 2, dtype=torch.float32), make_labels()
    out.logits = out.logits.bfloat16()
    hparams = {"xi": 2} if name == "mcloss" else {}
    result = L.build_criterion(name, K, **hparams)(out, y)
    assert result.loss.dtype == torch.float32 and torch.isfinite(result.loss)


def test_registry_names():
    assert list(L.LOSSES) == ["ce", "cc", "focal", "asoftmax", "mcloss", "ical", "fical"]
    assert L.PAPER_NAMES == {
        "ce": "CE",
        "cc": "CC-Loss",
        "focal": "Focal",
        "asoftmax": "A-Softmax",
        "mcloss": "MC-Loss",
        "ical": "ICAL",
        "fical": "FICAL",
    }
    for name, cls in L.LOSSES.items():
        assert cls.name == name and isinstance(cls.defaults, dict)
        assert cls.__doc__ and len(cls.__doc__) > 50
    assert "reconstruction from the abstract" in L.FICALoss.__doc__
    with pytest.raises(ValueError, match="'CC-Loss' is written 'cc' here"):  # one name per loss: the key
        L.build_criterion("CC-Loss", K)


def test_unknown_name_lists_names():
    with pytest.raises(ValueError) as info:
        L.build_criterion("arcface", K)
    for name in L.LOSSES:
        assert name in str(info.value)


def test_unknown_hparam_lists_defaults():
    with pytest.raises(ValueError) as info:
        L.build_criterion("focal", K, gama=2)
    message = str(info.value)
    assert "'gama'" in message and "gamma=2.0" in message and "alpha=1.0" in message


def test_typed_hparams_are_checked():
    """build_criterion takes typed values: an int for a float default, a whole float for an int default.
    (Strings are parsed by the CLI: tests/test_cli.py, parse_loss_params.)"""
    assert L.build_criterion("asoftmax", K, margin=2.0).margin == 2
    assert isinstance(L.build_criterion("asoftmax", K, margin=2.0).margin, int)
    assert L.build_criterion("ical", K, lam=2).lam == 2.0 and isinstance(L.build_criterion("ical", K, lam=2).lam, float)
    assert L.build_criterion("cc", K, group_size=None).group_size is None
    assert L.build_criterion("cc", K, group_size=16.0).group_size == 16
    with pytest.raises(ValueError, match="margin"):
        L.build_criterion("asoftmax", K, margin=2.5)
    with pytest.raises(ValueError, match="squared"):
        L.build_criterion("cc", K, squared=1)
    with pytest.raises(ValueError, match="form"):
        L.build_criterion("cc", K, form="bogus")
    with pytest.raises(ValueError, match="momentum"):
        L.build_criterion("fical", K, momentum=1.0)


@pytest.mark.parametrize(
    "loss, name, text",
    [
        ("cc", "lam", "0.5"),
        ("ical", "lam", "2"),
        ("focal", "gamma", "2.0"),
        ("fical", "momentum", "0"),
        ("asoftmax", "margin", "3"),
        ("mcloss", "xi", "4"),
        ("cc", "squared", "false"),
        ("cc", "group_size", "None"),
    ],
)
def test_strings_are_refused_for_non_string_hparams(loss, name, text):
    """No string coercion in the library: "0.5" for a float hyperparameter is a ValueError naming it."""
    with pytest.raises(ValueError, match=repr(name)):
        L.build_criterion(loss, K, **{name: text})


def test_routed_hparams_reach_only_the_losses_that_take_them():
    assert L.ROUTED == ("lam", "form", "group_size")
    routed = dict(lam=0.5, form="sums", group_size=8)
    assert L.routed_hparams("cc", {"eps": 1e-4}, **routed) == {"eps": 1e-4, "lam": 0.5, "form": "sums", "group_size": 8}
    assert L.routed_hparams("ical", None, **routed) == {"lam": 0.5}  # ICAL has a lambda, no form
    assert L.routed_hparams("ce", {}, **routed) == {}  # CE has no lambda
    assert L.routed_hparams("cc", {"lam": 2.0}, lam=None, form=None) == {"lam": 2.0}  # None: not routed
    params = {"gamma": 1.0}
    L.routed_hparams("focal", params, lam=3.0)
    assert params == {"gamma": 1.0}  # the caller's dict is not modified
    with pytest.raises(ValueError, match="eps"):
        L.routed_hparams("cc", eps=1e-4)


def test_model_kwargs_adjustments():
    kw = dict(default_last_width=512)
    assert L.model_kwargs_for(L.build_criterion("ce", 10), 10, cam=False, **kw) == {
        "cam": False,
        "head": "linear",
        "last_stage_width": 512,
    }
    assert L.model_kwargs_for("asoftmax", 10, cam=False, **kw)["head"] == "cosine"
    assert L.model_kwargs_for("ical", 10, cam=True, head="cosine", **kw)["head"] == "cosine"
    assert L.model_kwargs_for("fical", 10, cam=False, **kw)["head"] == "cosine"
    assert L.model_kwargs_for("cc", 10, cam=True, **kw) == {"cam": True, "head": "linear", "last_stage_width": 512}
    assert L.model_kwargs_for("ce", 10, cam=False, head="cosine", last_stage_width=256, **kw) == {
        "cam": False,
        "head": "cosine",
        "last_stage_width": 256,
    }
    mc = L.build_criterion("mcloss", 10)
    assert L.model_kwargs_for(mc, 10, cam=False, **kw)["last_stage_width"] == 510
    assert L.model_kwargs_for(L.build_criterion("mcloss", 196), 196, cam=False, **kw)["last_stage_width"] == 588
    assert L.model_kwargs_for(mc, 10, cam=False, last_stage_width=600, **kw)["last_stage_width"] == 600


def test_model_kwargs_refusals():
    kw = dict(default_last_width=512)
    no_cam = "CC-Loss needs the channel attention vectors: build the model with the CAM (cam=True)"
    with pytest.raises(ValueError, match=re.escape(no_cam)):
        L.model_kwargs_for("cc", 10, cam=False, **kw)
    with pytest.raises(ValueError, match="A-Softmax needs the cosine head"):
        L.model_kwargs_for("asoftmax", 10, cam=False, head="linear", **kw)
    with pytest.raises(ValueError, match="ICAL needs the cosine head"):
        L.model_kwargs_for("ical", 10, cam=False, head="linear", **kw)
    with pytest.raises(ValueError, match=r"MC-Loss with xi=3 needs a last stage of at least 10 x 3 = 30"):
        L.model_kwargs_for(L.build_criterion("mcloss", 10, xi=3), 10, cam=False, last_stage_width=29, **kw)
    with pytest.raises(ValueError, match="unknown head"):
        L.model_kwargs_for("ce", 10, cam=False, head="arc", **kw)


def test_with_real_model():
    """The contract with ccloss.models: build_model(**model_kwargs_for(...)) works for every loss."""
    import inspect

    from ccloss.models import build_model

    params = inspect.signature(build_model).parameters
    torch.manual_seed(0)
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    for name in L.LOSSES:
        crit = L.build_criterion(name, 10, **({"xi": 2} if name == "mcloss" else {}))
        kwargs = L.model_kwargs_for(crit, 10, cam=(name == "cc"), default_last_width=64)
        extra = {}
        if "width_mult" in params:
            extra["width_mult"] = 0.125
        if "in_channels" in params:
            extra["in_channels"] = 1
        model = build_model("resnet18", num_classes=10, **kwargs, **extra)
        result = crit(model(x), y)
        result.loss.backward()
        assert torch.isfinite(result.loss), name
