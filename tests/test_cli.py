"""ccloss.cli: the command line (flags, exit codes, messages), the loss table, and all string parsing
of loss hyperparameters (parse_loss_params; the library itself takes typed values)."""

import json
from pathlib import Path

import pytest
import torch

from ccloss.cli import describe_losses, main, parse_loss_params
from ccloss.config import TrainConfig
from ccloss.losses import LOSSES, PAPER_NAMES, build_criterion
from tests.helpers import cli

ROOT = Path(__file__).resolve().parents[1]
K = 5


# ---------------------------------------------------------------- loss hyperparameters from strings
def test_loss_param_strings_are_typed_by_the_losses_defaults():
    pairs = [("lam", "0.5"), ("squared", "false"), ("eps", "1e-4"), ("group_size", "16"), ("form", "sums")]
    params = parse_loss_params(pairs, ["cc"])
    assert params == {"lam": 0.5, "squared": False, "eps": 1e-4, "group_size": 16, "form": "sums"}
    assert isinstance(params["group_size"], int) and params["squared"] is False
    crit = build_criterion("cc", K, **params)
    assert crit.lam == 0.5 and crit.squared is False and crit.eps == 1e-4 and crit.group_size == 16
    assert crit.cc.squared is False and crit.cc.group_size == 16
    assert build_criterion("cc", K, **parse_loss_params([("group_size", "None")], ["cc"])).group_size is None
    margin = parse_loss_params([("margin", "3")], ["asoftmax"])
    assert margin == {"margin": 3} and build_criterion("asoftmax", K, **margin).margin == 3
    xi = parse_loss_params([("xi", "4")], ["mcloss"])
    assert xi == {"xi": 4} and build_criterion("mcloss", K, **xi).xi == 4
    with pytest.raises(ValueError, match="margin"):
        parse_loss_params([("margin", "2.5")], ["asoftmax"])
    with pytest.raises(ValueError, match="lam"):
        parse_loss_params([("lam", "abc")], ["ical"])
    with pytest.raises(ValueError, match="squared"):
        parse_loss_params([("squared", "maybe")], ["cc"])
    with pytest.raises(ValueError, match="form"):
        build_criterion("cc", K, **parse_loss_params([("form", "bogus")], ["cc"]))


def test_loss_params_follow_the_first_loss_that_has_them():
    # a comparison of several losses: lam is typed by the first loss in the list that takes it
    assert parse_loss_params([("lam", "2")], ["ce", "ical"]) == {"lam": 2.0}
    # a name no loss has stays a string: build_criterion then lists the valid ones
    assert parse_loss_params([("gama", "3")], ["focal"]) == {"gama": "3"}
    with pytest.raises(ValueError, match="gamma=2.0"):
        build_criterion("focal", K, **parse_loss_params([("gama", "3")], ["focal"]))


# ---------------------------------------------------------------- the loss table
def test_describe_losses():
    text = describe_losses()
    for name, paper in PAPER_NAMES.items():
        assert name in text and paper in text
    assert "reconstruction from the abstract" in text
    assert "lambda_base=1500.0" in text and "mask_fraction=0.5" in text


# ---------------------------------------------------------------- CLI
def test_cli_help_documents_every_flag_with_default():
    result = cli("train", "--help")
    assert result.returncode == 0
    defaults = TrainConfig()
    for field in TrainConfig.__dataclass_fields__:
        dashed = field.replace("_", "-")
        on_by_default = getattr(defaults, field) is True  # a switch that is on: the flag turns it off
        flag = "--loss-param" if field == "loss_params" else f"--no-{dashed}" if on_by_default else f"--{dashed}"
        assert flag in result.stdout, flag
    assert "--no-channels-last" in result.stdout and "(default: on)" in result.stdout
    assert "(default: 0.25)" in result.stdout and "(default: 32)" in result.stdout
    for name in LOSSES:
        assert name in result.stdout


@pytest.mark.parametrize(
    "args,expected",
    [
        (["train", "--dataset", "imagenet"], ["invalid choice: 'imagenet'", "digits", "mnist", "cifar100", "cars196"]),
        (["train", "--loss", "triplet"], ["invalid choice: 'triplet'", "asoftmax", "mcloss", "fical"]),
        (
            ["train", "--form", "cosine"],
            ["invalid choice: 'cosine'", "ratio", "log_ratio", "pair_ratio", "pair_softmax"],
        ),
        (["train", "--loss-param", "gamma"], ["expected NAME=VALUE"]),
        (["frobnicate"], ["invalid choice: 'frobnicate'", "train"]),
        (["train", "--group-size", "1.5"], ["invalid int value: '1.5'"]),
    ],
)
def test_cli_unknown_names_exit_2_with_valid_names(args, expected):
    result = cli(*args)
    assert result.returncode == 2
    for text in expected:
        assert text in result.stderr


def test_cli_bad_loss_param_and_no_cam(tmp_path):
    result = cli("train", "--loss", "focal", "--loss-param", "gama=3", "--epochs", "1", "--out", str(tmp_path / "a"))
    assert result.returncode == 2
    assert "gama" in result.stderr and "gamma" in result.stderr and "Traceback" not in result.stderr
    result = cli("train", "--no-cam", "--epochs", "1", "--out", str(tmp_path / "b"))
    assert result.returncode == 2 and "CC-Loss needs the channel attention vectors" in result.stderr


def test_cli_missing_dataset_says_where_and_how(tmp_path):
    result = cli(
        "train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1", "--out", str(tmp_path / "r")
    )
    assert result.returncode == 1
    assert str(tmp_path) in result.stderr and "--download" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_trains_one_epoch_from_the_cli(loss, tmp_path, capsys):
    """``python -m ccloss train``'s main() in this process (the subprocess entry point has its own test)."""
    out = tmp_path / loss
    extra = ["--no-cam"] if loss not in ("cc",) else []
    code = main(
        [
            "train",
            "--loss",
            loss,
            "--dataset",
            "digits",
            "--width-mult",
            "0.125",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--quiet",
            "--out",
            str(out),
            *extra,
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert f"run directory {out}" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    record = metrics["history"][0]
    assert all(torch.isfinite(torch.tensor(record[k])) for k in ("loss", "ce"))
    # learning happened: the epoch's training accuracy is above chance (10 %). The test accuracy after
    # a single epoch at lr 0.1 is not a stable signal (eval-mode BatchNorm statistics of a model still
    # moving fast: 14-52 % for the same loss with 1 or 2 threads).
    assert metrics["final"]["train_acc"] > 20.0


def test_the_cli_is_derived_from_the_config_and_trains_only():
    """One flag per TrainConfig field with its own help, choices and default; no default of its own; the
    experiments' commands live in `python -m experiments` (add_train_arguments and config_from_args serve it)."""
    import argparse
    import dataclasses

    from ccloss.cc_loss import FORMS
    from ccloss.cli import add_train_arguments, build_parser, config_from_args

    parser = build_parser()
    assert config_from_args(parser.parse_args(["train"])) == TrainConfig()
    help_text = cli("train", "--help").stdout
    for form in FORMS:
        assert form in help_text
    for spec in dataclasses.fields(TrainConfig):
        assert spec.metadata["help"].split(" (")[0][:30] in " ".join(help_text.split()), spec.name
    own = argparse.ArgumentParser()
    add_train_arguments(own, skip=("seed", "out", "preset"))
    args = own.parse_args(["--form", "ratio", "--group-size", "none", "--loss-param", "eps=0.01"])
    config = config_from_args(args, seed=4)
    assert (config.form, config.group_size, config.seed, config.loss_params) == ("ratio", None, 4, {"eps": 0.01})
    for command in ("compare", "sweep", "report", "study"):
        assert cli(command).returncode == 2
