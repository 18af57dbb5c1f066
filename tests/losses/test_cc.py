"""ccloss.losses.cc: CE + lam * CC on the channel-attention vectors."""

import pytest
import torch
from torch.nn import functional as F

from ccloss.cc_loss import CCLoss
from ccloss.losses import build_criterion

from .helpers import K, make_labels, make_output


def test_cc_criterion_is_ce_plus_lam_cc():
    out, y = make_output(cosine=False), make_labels()
    crit = build_criterion("cc", K, lam=0.7, form="log_ratio", group_size=6)
    assert isinstance(crit.cc, CCLoss) and crit.cc.form == "log_ratio" and crit.cc.group_size == 6
    result = crit(out, y)
    reference = CCLoss(form="log_ratio", group_size=6).statistics(out.attention, y)
    expected = F.cross_entropy(out.logits, y) + 0.7 * reference.loss
    assert torch.allclose(result.loss, expected)
    assert set(result.parts) == {"ce", "cc", "d_intra", "d_inter"}
    assert torch.allclose(result.parts["cc"], reference.loss)
    assert torch.allclose(result.parts["d_intra"], reference.d_intra)
    assert not any(p.requires_grad for p in result.parts.values())


def test_cc_without_attention_says_why():
    out = make_output(cam=False)
    with pytest.raises(ValueError, match="channel attention"):
        build_criterion("cc", K)(out, make_labels())


# --------------------------------------------------------------------------------------------
# warmup and ramp: lam(t)
# --------------------------------------------------------------------------------------------


def lam_by_hand(step, lam, warmup, ramp, total):
    """0 for the first warmup * total steps, then linear over ramp * total steps, then lam."""
    warmup_steps, ramp_steps = warmup * total, ramp * total
    if step < warmup_steps:
        return 0.0
    if step >= warmup_steps + ramp_steps:
        return lam
    return lam * (step - warmup_steps) / ramp_steps


@pytest.mark.parametrize(
    "step, expected",
    [(0, 0.0), (10, 0.0), (19, 0.0), (20, 0.0), (26, 0.4), (35, 1.0), (47, 1.8), (50, 2.0), (99, 2.0), (500, 2.0)],
)
def test_lam_at_hand_computed_values(step, expected):
    """lam 2, 100 steps, warm-up 20 % (steps 0..19), ramp 30 % (steps 20..49: 2 * (step - 20) / 30)."""
    crit = build_criterion("cc", K, lam=2.0, warmup=0.2, ramp=0.3)
    crit.set_total_steps(100)
    assert crit.scheduled
    assert crit.lam_at(step) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "warmup, ramp, total",
    [(0.2, 0.3, 100), (0.0, 0.5, 37), (0.25, 0.0, 40), (0.1, 0.9, 13), (1.0, 0.0, 10), (0.0, 1.0, 7), (0.33, 0.33, 64)],
)
def test_lam_at_matches_the_schedule_at_every_step(warmup, ramp, total):
    crit = build_criterion("cc", K, lam=0.7, warmup=warmup, ramp=ramp)
    crit.set_total_steps(total)
    values = [crit.lam_at(step) for step in range(total + 3)]
    assert values == pytest.approx([lam_by_hand(s, 0.7, warmup, ramp, total) for s in range(total + 3)], abs=1e-12)
    assert all(0.0 <= v <= 0.7 for v in values)
    assert all(b >= a for a, b in zip(values, values[1:]))  # never decreases
    assert values[-1] == 0.7  # after training: lam itself


def test_warmup_without_ramp_jumps_to_lam():
    crit = build_criterion("cc", K, lam=0.5, warmup=0.25)
    crit.set_total_steps(40)
    assert [crit.lam_at(s) for s in (0, 9, 10, 11, 39)] == [0.0, 0.0, 0.5, 0.5, 0.5]


def test_no_schedule_is_lam_throughout_without_total_steps():
    crit = build_criterion("cc", K, lam=0.3)
    assert not crit.scheduled and crit.total_steps is None
    assert [crit.lam_at(s) for s in (0, 1, 10**6)] == [0.3, 0.3, 0.3]
    out, y = make_output(cosine=False), make_labels()
    result = crit(out, y, step=5)
    assert "lam" not in result.parts  # the unscheduled parts are unchanged
    expected = F.cross_entropy(out.logits, y) + 0.3 * CCLoss().statistics(out.attention, y).loss
    assert torch.allclose(result.loss, expected)


@pytest.mark.parametrize("hparams", [{"warmup": 0.1}, {"ramp": 0.2}, {"warmup": 0.1, "ramp": 0.2}])
def test_schedule_without_total_steps_says_what_to_call(hparams):
    crit = build_criterion("cc", K, **hparams)
    with pytest.raises(ValueError, match=r"set_total_steps\(epochs \* steps_per_epoch\)"):
        crit.lam_at(0)
    with pytest.raises(ValueError, match="needs the number of training steps"):
        crit(make_output(cosine=False), make_labels())


def test_loss_in_warmup_is_plain_ce_then_ce_plus_lam_t_cc():
    crit = build_criterion("cc", K, lam=2.0, warmup=0.2, ramp=0.3)
    crit.set_total_steps(100)
    out, y = make_output(cosine=False), make_labels()
    ce = F.cross_entropy(out.logits, y)
    cc = CCLoss().statistics(out.attention, y).loss
    for step in (0, 19):
        result = crit(out, y, step=step)
        assert torch.equal(result.loss, ce)
        assert result.parts["lam"].item() == 0.0
        assert torch.allclose(result.parts["cc"], cc)  # still computed and logged
    # the attention gets no gradient during the warm-up, one after it
    crit(out, y, step=10).loss.backward()
    assert torch.equal(out.attention.grad, torch.zeros_like(out.attention))
    out2 = make_output(cosine=False)
    result = crit(out2, y, step=35)
    assert result.parts["lam"].item() == pytest.approx(1.0)
    assert torch.allclose(result.loss, F.cross_entropy(out2.logits, y) + 1.0 * cc)
    assert set(result.parts) == {"ce", "cc", "d_intra", "d_inter", "lam"}
    result.loss.backward()
    assert out2.attention.grad.abs().sum() > 0
    assert torch.allclose(crit(out2, y, step=80).loss, F.cross_entropy(out2.logits, y) + 2.0 * cc)


@pytest.mark.parametrize(
    "hparams, message",
    [
        ({"warmup": -0.1}, "warmup must be a fraction of training in [0, 1], got -0.1"),
        ({"ramp": -0.5}, "ramp must be a fraction of training in [0, 1], got -0.5"),
        ({"warmup": 0.6, "ramp": 0.5}, "fractions of training with a sum <= 1, got 0.6, 0.5"),
        ({"warmup": 1.5}, "fraction of training"),
        ({"lam": -1.0}, "lam must be a finite number >= 0"),
        ({"warmup": "0.1"}, "warmup must be a fraction of training in [0, 1], got '0.1'"),
        ({"ramp": float("nan")}, "ramp must be a fraction of training in [0, 1], got nan"),
    ],
)
def test_bad_schedules_say_what_is_wrong(hparams, message):
    with pytest.raises(ValueError) as error:
        build_criterion("cc", K, **hparams)
    assert message in str(error.value)


def test_schedule_boundaries_are_accepted():
    for warmup, ramp in ((1.0, 0.0), (0.0, 1.0), (0.6, 0.4), (0, 0)):
        crit = build_criterion("cc", K, warmup=warmup, ramp=ramp)
        assert crit.warmup == float(warmup) and crit.ramp == float(ramp)


class ListLoader(list):
    """The two things train_one_epoch needs of a loader: iteration and ``device``."""

    device = torch.device("cpu")


def test_training_loop_passes_the_global_step():
    """Two epochs of 4 steps, 8 in all, warm-up 2 steps, ramp 4: lam(t) = 0, 0, 0, .25, .5, .75, 1, 1 (x lam),
    so the logged mean of lam is 0.0625 * lam in epoch 1 and 0.8125 * lam in epoch 2."""
    from ccloss.models import build_model
    from ccloss.train import train_one_epoch

    torch.manual_seed(0)
    model = build_model("resnet18", K, in_channels=1, width_mult=0.0625, cam=True)
    crit = build_criterion("cc", K, lam=0.4, warmup=0.25, ramp=0.5)
    crit.set_total_steps(8)
    g = torch.Generator().manual_seed(0)
    loader = ListLoader((torch.randn(6, 1, 8, 8, generator=g), make_labels(6, K)) for _ in range(4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    first = train_one_epoch(model, crit, loader, optimizer, step=0)
    second = train_one_epoch(model, crit, loader, optimizer, step=first.step)
    assert (first.step, second.step) == (4, 8)
    assert first.means["lam"] == pytest.approx(0.0625 * 0.4)
    assert second.means["lam"] == pytest.approx(0.8125 * 0.4)


@pytest.mark.parametrize("steps", [0, -5])
def test_set_total_steps_refuses_a_run_without_steps(steps):
    criterion = build_criterion("cc", 10, warmup=0.2, ramp=0.3)
    with pytest.raises(ValueError, match="total_steps must be a positive number of steps"):
        criterion.set_total_steps(steps)
