"""ccloss.losses: the registry, build_criterion, hyperparameter checks, model_kwargs_for and
routed_hparams, and every loss on the same inputs."""

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
    """build_criterion takes typed values (an int passes for a float, nothing else is converted) and checks the
    ranges written beside each hyperparameter. (Strings are parsed by the CLI: tests/test_cli.py.)"""
    assert L.build_criterion("ical", K, lam=2).lam == 2.0 and isinstance(L.build_criterion("ical", K, lam=2).lam, float)
    assert L.build_criterion("cc", K, group_size=None).group_size is None
    assert L.build_criterion("asoftmax", K, margin=3).margin == 3
    for loss, hparams, message in [
        ("asoftmax", {"margin": 2.5}, "margin must be an integer in [1, 10], got 2.5"),
        ("asoftmax", {"margin": 11}, "margin must be an integer in [1, 10], got 11"),
        ("cc", {"group_size": 16.0}, "group_size must be None (the whole batch) or an integer >= 2"),
        ("cc", {"group_size": 1}, "group_size must be None (the whole batch) or an integer >= 2"),
        ("cc", {"squared": 1}, "squared must be bool, got 1"),
        ("cc", {"form": "bogus"}, "unknown form 'bogus'; valid: ratio, sums"),
        ("cc", {"lam": -1.0}, "lam must be a finite number >= 0, got -1.0"),
        ("cc", {"eps": float("nan")}, "eps must be a finite number >= 0, got nan"),
        ("fical", {"momentum": 1.0}, "momentum must be in [0, 1), got 1.0"),
        ("focal", {"alpha": 0}, "alpha must be a finite number > 0, got 0"),
        ("mcloss", {"mask_fraction": 1.0}, "mask_fraction must be in [0, 1), got 1.0"),
    ]:
        with pytest.raises(ValueError) as error:
            L.build_criterion(loss, K, **hparams)
        assert message in str(error.value) and f"loss {loss!r}" in str(error.value), str(error.value)


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
    with pytest.raises(ValueError, match=name):
        L.build_criterion(loss, K, **{name: text})


def test_cc_options_are_written_once():
    """CCLoss, cc_statistics and the "cc" criterion take CCOptions' fields with CCOptions' defaults."""
    import dataclasses
    import inspect

    from ccloss.cc_loss import CCLoss, CCOptions, cc_statistics

    options = {f.name: f.default for f in dataclasses.fields(CCOptions)}
    assert options["form"] == "pair_ratio" and options["eps"] == 1e-3 and options["relative_eps"] is True
    for function in (CCLoss, cc_statistics, L.LOSSES["cc"]):
        parameters = inspect.signature(function).parameters
        assert {k: parameters[k].default for k in options} == options, function
    assert L.build_criterion("cc", K).cc.options == options


def test_a_loss_does_not_choose_the_layout():
    """Criteria have no say on the model: the head and the width come from ccloss.config (test_config.py)."""
    for cls in L.LOSSES.values():
        assert not hasattr(cls, "needs")
    assert not hasattr(L, "model_kwargs_for") and not hasattr(L, "ModelNeeds")
