"""ccloss.config: TrainConfig's validation and its per-loss configs (for_loss)."""

import pytest

from ccloss.config import TrainConfig
from tests.helpers import ROOT


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"dataset": "imagenet"}, "digits, mnist5k, mnist, cifar100, cars196"),
        ({"backbone": "resnet50"}, "resnet18, vgg16"),
        ({"loss": "triplet"}, "ce, cc"),
        ({"device": "tpu"}, "auto, cpu, cuda"),
        ({"epochs": 0}, "positive integer"),
        ({"batch_size": 2.5}, "positive integer"),
        ({"lr": -1.0}, "lr"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides).validate()


def test_for_loss_drops_what_a_loss_does_not_take():
    base = TrainConfig(lam=1.0, form="ratio", group_size=4)
    ce = base.for_loss("ce")
    assert (ce.loss, ce.lam, ce.form, ce.group_size) == ("ce", None, None, None)
    ical = base.for_loss("ical")
    assert (ical.lam, ical.form, ical.group_size) == (1.0, None, None)


def test_preset_cc_v1_is_the_first_reconstruction_explicitly():
    from ccloss.config import PRESETS, TrainConfig

    config = TrainConfig.from_preset("cc_v1", seed=3, loss_params={"eps": 1e-8})
    assert (config.loss, config.lam, config.form, config.cam_min_hidden, config.cam_activation) == (
        "cc", 1.0, "ratio", 1, "relu")  # fmt: skip
    assert config.loss_params == {"squared": True, "eps": 1e-8, "normalize": "none", "warmup": 0.0, "ramp": 0.0}
    assert config.seed == 3 and PRESETS["cc_v1"]["loss_params"]["eps"] == 1e-3  # the preset itself is untouched
    with pytest.raises(ValueError, match="unknown preset 'v0'; valid: cc_v1, cc_v2, cc_pair"):
        TrainConfig.from_preset("v0")


def test_preset_cc_v2_is_the_stage_two_winner_with_the_published_se_block():
    from ccloss.config import TrainConfig

    config = TrainConfig.from_preset("cc_v2")
    assert (config.lam, config.form, config.cam_min_hidden, config.cam_activation) == (0.03, "ratio", 1, "relu")
    default = TrainConfig()  # what the presets leave behind: Part 4's setting
    assert (default.cam_min_hidden, default.lam) == (32, None)
    assert default.criterion_hparams(10) == {}  # lam, form, eps: the loss's own defaults
    from ccloss.losses import build_criterion

    assert (
        build_criterion("cc", 10).lam == 0.1 and build_criterion("cc", 10, **default.criterion_hparams(10)).lam == 0.1
    )


def test_preset_cc_pair_is_the_part5_winner_as_its_test_round_ran_it():
    """The preset against the pair_ratio point of stage C's sweep file (written from the runs by the rule)."""
    import yaml

    points = yaml.safe_load((ROOT / "sweeps" / "study_part5_test.yaml").read_text())["points"]
    point = next(p for p in points if p["label"] == "pair_ratio")
    config = TrainConfig.from_preset("cc_pair")
    assert (config.loss, config.lam, config.form, config.loss_params) == (
        point["loss"], point["lam"], point["form"], point["loss_params"])  # fmt: skip
    assert {"cam_activation": config.cam_activation, "cam_min_hidden": config.cam_min_hidden} == point["train_options"]
    from ccloss.losses import build_criterion

    built = build_criterion("cc", 10, **config.criterion_hparams(10))
    assert built.lam == 0.1 and built.cc.form == "pair_ratio" and built.cc.tau == 0.1


def test_cli_preset_fills_the_flags_left_at_their_defaults():
    from ccloss.cli import build_parser, config_from_args

    args = build_parser().parse_args(["train", "--preset", "cc_v1", "--epochs", "2", "--loss-param", "eps=1e-8"])
    config = config_from_args(args)
    assert config.lam == 1.0 and config.cam_min_hidden == 1 and config.epochs == 2
    assert config.loss_params["eps"] == 1e-8 and config.loss_params["squared"] is True
    explicit = config_from_args(build_parser().parse_args(["train", "--preset", "cc_v1", "--lam", "0.5"]))
    assert explicit.lam == 0.5
