"""Property-based tests (hypothesis) of the public entry points (issue 21): every input gets a correct
result or a ValueError (argparse: exit code 2) that names the problem; nothing else escapes. Each test
counts the inputs it tried; ``make test`` prints the totals (tests/conftest.py)."""

from __future__ import annotations

import math
import string

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ccloss import CCLoss, ChannelAttention, TrainConfig, cc_statistics
from ccloss.cc_loss import FORMS, NORMALIZATIONS
from ccloss.cli import build_parser, config_from_args
from experiments.sweep import load_sweep
from tests.conftest import count_input
from tests.test_cc_loss import reference_cc

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
LABEL_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


@st.composite
def batches(draw, finite: bool = True):
    """A batch of attention vectors and labels: any size from 1, any number of classes (one included)."""
    b, c = draw(st.integers(1, 24)), draw(st.integers(1, 8))
    classes = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(b, c, generator=g, dtype=torch.float64)
    if draw(st.booleans()):
        a = a.round(decimals=1)  # ties and identical vectors
    labels = torch.randint(0, classes, (b,), generator=g)
    if not finite:
        where = torch.rand(b, c, generator=g) < 0.3
        where[0, 0] = True
        a = torch.where(where, torch.tensor(draw(st.sampled_from([math.nan, math.inf, -math.inf]))), a)
    return a, labels


options = st.fixed_dictionaries(
    {
        "form": st.sampled_from(FORMS),
        "squared": st.booleans(),
        "group_size": st.one_of(st.none(), st.integers(2, 9)),
        "normalize": st.sampled_from(NORMALIZATIONS),
    }
)


@SETTINGS
@given(batch=batches(), opts=options, dtype=st.sampled_from(FLOAT_DTYPES), label_dtype=st.sampled_from(LABEL_DTYPES))
def test_cc_loss_matches_the_loop_in_any_dtype(batch, opts, dtype, label_dtype):
    count_input("CCLoss / cc_statistics")
    a, labels = batch
    stats = cc_statistics(a.to(dtype), labels.to(label_dtype), **opts)
    assert stats.loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert stats.distances.shape == (len(labels), len(labels))
    if opts["normalize"] == "none":  # the loop has no normalisation; the other geometries have their own tests
        expected, _, _ = reference_cc(
            a.to(dtype).double(), labels, opts["form"], opts["squared"], 1e-3, opts["group_size"]
        )
        tolerance = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-4, torch.bfloat16: 1e-4}[dtype]
        assert stats.loss.item() == pytest.approx(expected, rel=tolerance, abs=tolerance)
    grad_input = a.clone().requires_grad_(True)
    CCLoss(**opts)(grad_input, labels).backward()
    assert torch.isfinite(grad_input.grad).all()


@SETTINGS
@given(batch=batches(finite=False), opts=options)
def test_non_finite_attention_gives_a_non_finite_loss_the_loop_reports(batch, opts):
    """NaN / Inf in: the loss says so (NaN or Inf), never a silent finite number; the training loop then
    stops with NonFiniteLossError naming the epoch and step (tests/test_train.py)."""
    count_input("CCLoss with NaN/Inf attention")
    a, labels = batch
    assume(len(labels) >= 2)
    value = cc_statistics(a, labels, **opts).loss
    assert not torch.isfinite(value), value  # the batch mean is subtracted first: one bad entry reaches every pair


@SETTINGS
@given(
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=4),
    dtype=st.sampled_from([torch.float32, torch.int64, torch.bool, torch.complex64]),
    label_shape=st.lists(st.integers(0, 5), min_size=0, max_size=2),
    label_dtype=st.sampled_from([torch.int64, torch.float32, torch.bool]),
)
def test_malformed_cc_inputs_get_a_clear_error(shape, dtype, label_shape, label_dtype):
    count_input("CCLoss malformed inputs")
    attention, labels = torch.zeros(shape, dtype=dtype), torch.zeros(label_shape, dtype=label_dtype)
    ok = (
        len(shape) == 2 and shape[0] >= 1 and dtype in (torch.float32,) and label_dtype == torch.int64
        and label_shape == shape[:1]
    )  # fmt: skip
    if ok:
        assert torch.isfinite(CCLoss()(attention, labels))
    else:
        with pytest.raises(ValueError, match="attention|label|CC-Loss"):
            CCLoss()(attention, labels)


@SETTINGS
@given(
    channels=st.integers(1, 40),
    reduction=st.integers(1, 20),
    min_hidden=st.integers(1, 40),
    tokens=st.booleans(),
    extra=st.integers(1, 4),
)
def test_channel_attention_any_width_maps_and_tokens(channels, reduction, min_hidden, tokens, extra):
    count_input("ChannelAttention")
    cam = ChannelAttention(channels, reduction, min_hidden=min_hidden)
    assert cam.hidden == max(min_hidden, channels // reduction)
    x = torch.randn(2, extra, channels) if tokens else torch.randn(2, channels, extra, extra + 1)
    y, a = cam(x)
    assert y.shape == x.shape and a.shape == (2, channels) and ((a >= 0) & (a <= 1)).all()
    with pytest.raises(ValueError, match=f"expects a B x {channels} x H x W map or B x N x {channels} tokens"):
        cam(torch.randn(2, 3, channels + 1) if tokens else torch.randn(2, channels + 1, 2, 2))


junk = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 500), st.floats(allow_nan=True, allow_infinity=True),
    st.text(string.ascii_letters + string.digits + "._-", max_size=12), st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=6), st.integers(0, 3), max_size=2),
)  # fmt: skip
CONFIG_FIELDS = [f for f in TrainConfig.__dataclass_fields__ if f not in ("out", "resume", "overwrite", "quiet")]


@SETTINGS
@given(values=st.dictionaries(st.sampled_from(CONFIG_FIELDS), junk, max_size=4))
def test_train_config_accepts_or_names_the_bad_field(values):
    count_input("TrainConfig")
    try:
        config = TrainConfig(**values).validate()
        config.resolved_loss_hparams()
    except ValueError as error:
        assert str(error)  # says what was wrong
        return
    assert config.epochs >= 1 and config.batch_size >= 1


FLAGS = sorted(
    {s for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions for s in a.option_strings}
    - {"-h", "--help"}
)


@SETTINGS
@given(
    flags=st.lists(
        st.tuples(st.sampled_from(FLAGS), st.text(string.ascii_letters + string.digits + ".=-_", max_size=8)),
        max_size=4,
    )
)
def test_every_train_flag_parses_or_exits_with_a_message(flags, capsys):
    """The CLI path up to training: argparse, the config, the loss. Bad values exit 2 with a message."""
    count_input("CLI train flags")
    argv = ["train"] + [part for flag, value in flags for part in (flag, value) if part != ""]
    try:
        args = build_parser().parse_args(argv)
        config_from_args(args).validate().resolved_loss_hparams()
    except SystemExit as exit_:
        assert exit_.code == 2 and "error:" in capsys.readouterr().err
    except ValueError as error:
        assert str(error)


sweep_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(string.ascii_lowercase, max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
        ["name", "notebook", "fixed", "grid", "points", "seeds", "paper", "lam", "loss", "label", "epochs", "x"]
    ), inner, max_size=4)),
    max_leaves=12,
)  # fmt: skip


@SETTINGS
@given(document=sweep_values, keep_notebook=st.booleans())
def test_sweep_files_load_or_say_what_is_wrong(document, keep_notebook, tmp_path_factory):
    count_input("sweep YAML files")
    if isinstance(document, dict) and keep_notebook:
        document = {**document, "name": "fuzz", "notebook": "notebooks/02_train.ipynb"}
    path = tmp_path_factory.mktemp("sweep") / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        sweep = load_sweep(path)
    except ValueError as error:
        assert path.name in str(error), error  # every message names the file it is about
        return
    assert sweep.name == "fuzz" and all(p.name for p in sweep.expand())


@settings(max_examples=60, deadline=None)
@given(cut=st.floats(0.0, 0.999), garbage=st.binary(max_size=64), magic=st.booleans())
def test_truncated_or_wrong_idx_files_are_named(cut, garbage, magic, tmp_path_factory):
    from ccloss import data
    from tests.readers.test_mnist import _write_mnist

    count_input("MNIST IDX files")
    root = tmp_path_factory.mktemp("mnist")
    _write_mnist(root, gz=False)
    target = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    blob = target.read_bytes()
    blob = (b"\x00\x00\x0b\x07" + blob[4:]) if magic else blob[: int(len(blob) * cut)] + garbage
    target.write_bytes(blob)
    try:
        images, labels = data.load_tensors("mnist", "train", root)
    except (ValueError, data.DatasetMissingError) as error:
        assert "train-images-idx3-ubyte" in str(error) or "MNIST" in str(error), error
        return
    assert images.shape[0] == labels.shape[0]  # garbage that happens to be a valid file


@settings(max_examples=60, deadline=None)
@given(cut=st.floats(0.0, 0.999), garbage=st.binary(max_size=64))
def test_corrupt_cifar_pickles_are_named(cut, garbage, tmp_path_factory):
    from ccloss import data
    from tests.readers.test_cifar100 import _write_cifar100 as write_cifar100

    count_input("CIFAR-100 pickles")
    root = tmp_path_factory.mktemp("cifar")
    write_cifar100(root)
    target = root / "cifar-100-python" / "train"
    blob = target.read_bytes()
    target.write_bytes(blob[: int(len(blob) * cut)] + garbage)
    with pytest.raises((ValueError, data.DatasetMissingError), match="cifar-100-python/train"):
        data.load_tensors("cifar100", "train", root)


def test_property_inputs_are_counted():
    """The counter the summary reads is live (the totals are printed at the end of the run)."""
    from tests.conftest import PROPERTY_INPUTS

    before = PROPERTY_INPUTS["self-check"]
    count_input("self-check")
    assert PROPERTY_INPUTS["self-check"] == before + 1
    assert np.isfinite(sum(PROPERTY_INPUTS.values()))
