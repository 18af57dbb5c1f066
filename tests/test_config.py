"""ccloss.config: TrainConfig's validation, its per-loss configs (for_loss), the presets and the model's layout
(TrainConfig.resolved, the one place a loss's head and width are chosen)."""

import dataclasses

import pytest
import torch

from ccloss.cc_loss import CCOptions
from ccloss.config import COSINE_HEAD_LOSSES, PRESETS, TrainConfig, build_for_config
from ccloss.losses import LOSSES, build_criterion
from tests.helpers import ROOT


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'; valid: digits, mnist5k, mnist, cifar100, cars196"),
        ({"backbone": "resnet50"}, "valid: resnet18, vgg16"),
        ({"loss": "triplet"}, "valid: ce, cc"),
        ({"device": "tpu"}, "valid: auto, cpu, cuda"),
        ({"form": "cosine"}, "unknown form 'cosine'; valid: ratio, sums, difference, log_ratio, pair_ratio"),
        ({"head": "arc"}, "unknown head 'arc'; valid: linear, cosine"),
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
        ({"batch_size": 2.5}, "batch_size must be a positive integer, got 2.5"),
        ({"lr": -1.0}, "lr must be a finite number > 0, got -1.0"),
        ({"lam": -0.5}, "lam must be None or a finite number >= 0, got -0.5"),
        ({"group_size": 1}, "group_size must be None (the whole batch) or an integer >= 2"),
        ({"lr_milestones": (0.5, 1.5)}, "lr_milestones must be fractions of the epochs in (0, 1]"),
        ({"amp": "yes"}, "amp must be bool, got 'yes'"),
        ({"last_stage_width": 0}, "last_stage_width must be None or a positive integer, got 0"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError) as error:
        TrainConfig(**overrides).validate()
    assert message in str(error.value)


def test_validate_without_data_skips_only_the_dataset():
    assert TrainConfig(dataset="mine").validate(data=False).dataset == "mine"
    assert TrainConfig(lr=1).validate().lr == 1.0 and isinstance(TrainConfig(lr=1).validate().lr, float)


def test_cc_fields_take_help_and_choices_from_cc_options():
    """form and group_size are written once, in CCOptions; TrainConfig's fields default to None (the loss's)."""
    cc = {f.name: f.metadata for f in dataclasses.fields(CCOptions)}
    mine = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for name in ("form", "group_size"):
        assert mine[name].default is None and mine[name].metadata["choices"] == cc[name]["choices"]
        assert mine[name].metadata["help"].startswith(cc[name]["help"])
    assert build_criterion("cc", 10, **TrainConfig().criterion_hparams(10)).cc.form == "pair_ratio"


def test_for_loss_drops_what_a_loss_does_not_take():
    base = TrainConfig(lam=1.0, form="ratio", group_size=4)
    ce = base.for_loss("ce")
    assert (ce.loss, ce.lam, ce.form, ce.group_size) == ("ce", None, None, None)
    ical = base.for_loss("ical")
    assert (ical.lam, ical.form, ical.group_size) == (1.0, None, None)
    assert base.for_loss("cc").criterion_hparams(10) == {"lam": 1.0, "form": "ratio", "group_size": 4}


def test_routed_fields_override_loss_params_and_reach_only_the_losses_that_take_them():
    config = TrainConfig(loss="cc", lam=0.5, loss_params={"lam": 2.0, "eps": 1e-4})
    assert config.criterion_hparams(10) == {"lam": 0.5, "eps": 1e-4}
    assert TrainConfig(loss="cc", loss_params={"lam": 2.0}).criterion_hparams(10) == {"lam": 2.0}
    assert TrainConfig(loss="ce", lam=0.5, form="sums").criterion_hparams(10) == {}  # CE has neither


@pytest.mark.parametrize("loss", list(LOSSES))
def test_the_layout_is_chosen_in_resolved_and_written_out(loss):
    """head: cosine for the losses defined on unit class vectors; last stage: 512 x width_mult, or classes x xi
    for MC-Loss. The resolved config is what config.json records and build_for_config builds."""
    config = TrainConfig(loss=loss, width_mult=0.125).resolved(10)
    head = "cosine" if loss in ("asoftmax", "ical", "fical") else "linear"
    width = 10 * 6 if loss == "mcloss" else 64  # xi = max(3, 64 // 10) = 6
    assert (config.head, config.last_stage_width) == (head, width)
    assert config.resolved(10) == config  # resolving twice changes nothing
    assert TrainConfig.from_dict(config.to_dict()) == config
    from ccloss.data import dataset_info

    criterion, model = build_for_config(TrainConfig(loss=loss, width_mult=0.125), dataset_info("digits"), "cpu")
    assert model.channels == width and type(model.head).__name__ == ("CosineHead" if head == "cosine" else "Linear")
    torch.manual_seed(0)
    result = criterion(model(torch.randn(4, 1, 32, 32)), torch.tensor([0, 1, 2, 3]))
    assert torch.isfinite(result.loss)


def test_layout_refusals_say_what_to_change():
    assert COSINE_HEAD_LOSSES == ("asoftmax", "ical", "fical")
    with pytest.raises(ValueError, match="A-Softmax needs the cosine head"):
        TrainConfig(loss="asoftmax", head="linear").resolved(10)
    with pytest.raises(ValueError, match=r"CC-Loss needs the channel attention vectors.*cam=True"):
        TrainConfig(loss="cc", cam=False).resolved(10)
    with pytest.raises(ValueError, match=r"MC-Loss with xi=3 needs a last stage of at least 10 x 3 = 30"):
        TrainConfig(loss="mcloss", last_stage_width=29, loss_params={"xi": 3}).resolved(10)
    explicit = TrainConfig(loss="mcloss", last_stage_width=600, loss_params={"xi": 3}).resolved(10)
    assert (explicit.last_stage_width, explicit.loss_params) == (600, {"xi": 3})
    assert TrainConfig(loss="ce", head="cosine").resolved(10).head == "cosine"  # an explicit choice stays


def test_presets_name_every_cc_choice_and_the_paper_is_one_preset_away():
    paper = TrainConfig.from_preset("paper")
    assert (paper.loss, paper.lam, paper.form, paper.cam_min_hidden, paper.cam_activation) == (
        "cc", 1.0, "ratio", 1, "relu")  # fmt: skip
    assert paper.loss_params["relative_eps"] is False and paper.loss_params["eps"] == 1e-3
    config = TrainConfig.from_preset("cc_v1", seed=3, loss_params={"eps": 1e-8})
    fixed = {"squared": True, "relative_eps": False, "normalize": "none", "warmup": 0.0, "ramp": 0.0}
    assert config.loss_params == {**fixed, "eps": 1e-8}
    assert config.seed == 3 and PRESETS["cc_v1"]["loss_params"]["eps"] == 1e-3  # the preset itself is untouched
    assert TrainConfig.from_preset("cc_v2").lam == 0.03
    with pytest.raises(ValueError, match="unknown preset 'v0'; valid: paper, cc_v1, cc_v2, cc_pair"):
        TrainConfig.from_preset("v0")
    for name in PRESETS:
        built = build_criterion("cc", 10, **TrainConfig.from_preset(name).criterion_hparams(10))
        assert set(built.hparams) == set(LOSSES["cc"].defaults)


def test_the_default_is_the_class_pair_form():
    default = TrainConfig()
    assert (default.loss, default.lam, default.form, default.cam_min_hidden) == ("cc", None, None, 32)
    built = build_criterion("cc", 10, **default.criterion_hparams(10))
    assert (built.lam, built.cc.form, built.cc.relative_eps) == (0.1, "pair_ratio", True)


def test_preset_cc_pair_is_the_part5_winner_as_its_test_round_ran_it():
    """The preset against the pair_ratio point of stage C's sweep file (written from the runs by the rule), with
    the fixed eps those runs used."""
    import yaml

    points = yaml.safe_load((ROOT / "sweeps" / "study_part5_test.yaml").read_text())["points"]
    point = next(p for p in points if p["label"] == "pair_ratio")
    config = TrainConfig.from_preset("cc_pair")
    assert (config.loss, config.lam, config.form) == (point["loss"], point["lam"], point["form"])
    assert config.loss_params == {**point["loss_params"], "relative_eps": False}
    assert {"cam_activation": config.cam_activation, "cam_min_hidden": config.cam_min_hidden} == point["train_options"]


def test_cli_preset_fills_the_flags_left_at_their_defaults():
    from ccloss.cli import build_parser, config_from_args

    args = build_parser().parse_args(["train", "--preset", "paper", "--epochs", "2", "--loss-param", "eps=1e-8"])
    config = config_from_args(args)
    assert config.lam == 1.0 and config.cam_min_hidden == 1 and config.epochs == 2 and config.form == "ratio"
    assert config.loss_params["eps"] == 1e-8 and config.loss_params["squared"] is True
    explicit = config_from_args(build_parser().parse_args(["train", "--preset", "cc_v1", "--lam", "0.5"]))
    assert explicit.lam == 0.5
