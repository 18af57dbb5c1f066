"""ccloss.metrics: the intra/inter ratio of a whole set (O(N C) memory) against the pairwise statistic,
the relative collapse flag, the dead SE units, and the records the training loop writes."""

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from ccloss.cc_loss import cc_statistics
from ccloss.metrics import (
    COLLAPSE_TOL,
    STRUCTURE_KEYS,
    dataset_intra_inter,
    eval_record,
    final_record,
    structure_record,
    upgrade_keys,
)
from ccloss.models import CCModel, build_model
from ccloss.train import evaluate


def test_dataset_intra_inter_matches_pairwise():
    gen = torch.Generator().manual_seed(4)
    a = torch.rand(60, 7, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 5, (60,), generator=gen)
    stats = cc_statistics(a, labels, form="ratio", eps=0.0)
    whole = dataset_intra_inter(a, labels)
    assert whole["d_intra"] == pytest.approx(stats.d_intra.item(), rel=1e-9)
    assert whole["d_inter"] == pytest.approx(stats.d_inter.item(), rel=1e-9)
    assert whole["ratio"] == pytest.approx(stats.loss.item(), rel=1e-9)


def test_dataset_intra_inter_flags_collapsed_vectors():
    """Vectors shrunk onto one point: the ratio of the shrunk set equals the original's (the ratio is
    scale-invariant) but the set is flagged against its own earlier d_inter; identical vectors give NaN."""
    gen = torch.Generator().manual_seed(5)
    a = torch.rand(40, 6, generator=gen, dtype=torch.float64)
    labels = torch.arange(40) % 4
    spread = dataset_intra_inter(a, labels)
    assert spread["collapsed"] is False
    centre = a.mean(0, keepdim=True)
    shrunk = dataset_intra_inter(centre + 1e-3 * (a - centre), labels, reference=spread["d_inter"])
    assert shrunk["ratio"] == pytest.approx(spread["ratio"], rel=1e-6)
    assert shrunk["d_inter"] == pytest.approx(spread["d_inter"] * 1e-6, rel=1e-6)
    assert shrunk["collapsed"] is True
    same = dataset_intra_inter(torch.full((10, 6), 0.5, dtype=torch.float64), torch.arange(10) % 2)
    assert math.isnan(same["ratio"]) and same["collapsed"] is True and same["d_inter"] == 0.0
    assert dataset_intra_inter(a, labels, collapse_tol=10.0, reference=spread["d_inter"])["collapsed"] is True
    with pytest.raises(ValueError, match="collapse_tol"):
        dataset_intra_inter(a, labels, collapse_tol=-1.0)
    with pytest.raises(ValueError, match="reference"):
        dataset_intra_inter(a, labels, reference=float("nan"))


def narrow_band(seed, scale=1.0, channels=576, n=200, classes=10):
    """Attention like a torchvision mobilenet_v3_small trunk's: each channel fixed in [0.45, 0.55],
    images and classes differing by ~1e-4, so that d_inter ~1e-5 (issue 24)."""
    g = torch.Generator().manual_seed(seed)
    base = 0.45 + 0.1 * torch.rand(channels, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = torch.arange(n) % classes
    class_offset = torch.randn(classes, channels, generator=g, dtype=torch.float64)
    noise = torch.randn(n, channels, generator=g, dtype=torch.float64)
    return base + scale * 1e-4 * (class_offset[labels] + noise) / 2, labels


def d_inter_by_hand(a, labels):
    """Mean squared distance over pairs of different classes: a double loop."""
    total, count = 0.0, 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            if labels[i] != labels[j]:
                total += float(((a[i] - a[j]) ** 2).sum())
                count += 1
    return total / count


def test_a_narrow_band_is_not_collapsed_against_its_own_start_but_a_shrunk_set_is():
    at_init, labels = narrow_band(1)
    reference = d_inter_by_hand(at_init, labels)
    assert 1e-6 < reference < 1e-4 and at_init.min() > 0.44 and at_init.max() < 0.56
    trained, _ = narrow_band(2)  # the same band, another draw: d_inter of the same order
    evaluation = {"logits": torch.zeros(len(labels), 10), "labels": labels, "attention": trained}
    record = eval_record(evaluation, "test", reference=reference)
    assert record["test_d_inter"] == pytest.approx(d_inter_by_hand(trained, labels), rel=1e-9)
    assert record["test_d_inter"] < 1e-3  # the old fixed limit (1e-3) flagged this run as collapsed
    assert record["test_attention_collapsed"] is False
    shrunk, _ = narrow_band(2, scale=1e-2)  # d_inter 1e4 times smaller
    assert record["test_d_inter"] / d_inter_by_hand(shrunk, labels) == pytest.approx(1e4, rel=1e-6)
    shrunk_record = eval_record({**evaluation, "attention": shrunk}, "test", reference=reference)
    assert shrunk_record["test_attention_collapsed"] is True


def test_without_a_reference_the_scale_is_the_per_sample_spread():
    """mean_i sum_c (a_ic - mean_c a_ic)^2: the narrow band spreads ~0.5 over its channels, so a
    d_inter of ~1e-5 is below COLLAPSE_TOL of it; vectors that differ between images as much as within are not."""
    a, labels = narrow_band(3)
    spread = sum(float(((row - row.mean()) ** 2).sum()) for row in a) / len(a)
    stats = dataset_intra_inter(a, labels)
    assert stats["collapsed"] is True and stats["d_inter"] < COLLAPSE_TOL * spread
    assert dataset_intra_inter(a, labels, reference=stats["d_inter"] / COLLAPSE_TOL * 0.99)["collapsed"] is False
    assert dataset_intra_inter(a, labels, reference=stats["d_inter"] / COLLAPSE_TOL * 1.01)["collapsed"] is True
    spread_out = torch.rand(40, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert dataset_intra_inter(spread_out, torch.arange(40) % 4)["collapsed"] is False


def test_structure_record_without_the_analysis_extra_warns_once_and_skips(monkeypatch):
    monkeypatch.setitem(sys.modules, "ccloss.measures", None)  # as if scikit-learn or PML were missing
    evaluation = {"attention": torch.rand(8, 3), "labels": torch.arange(8) % 2}
    with pytest.warns(UserWarning, match=r"pip install ccloss\[analysis\]") as caught:
        assert structure_record(evaluation, evaluation, "test") == {}
    assert len(caught) == 1


def test_structure_record_and_final_record_carry_the_class_measures():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    attention = torch.rand(60, 4, generator=gen) + labels[:, None]
    evaluation = {"attention": attention, "labels": labels}
    record = structure_record(evaluation, evaluation, "test")
    assert set(record) == {f"test_{key}" for key in STRUCTURE_KEYS} | {"class_measures_seconds"}
    assert record["test_precision_at_1"] == 100.0 and record["test_unseparated_pairs"] == 0
    history = [{**record, "test_acc": 90.0, "epoch": 1, "train_acc": 50.0, "seconds": 1.0, "images_per_sec": 10.0}]
    final = final_record(history, {"acc": 90.0, "epoch": 1}, "test")
    assert {k: final[k] for k in record} == record


def test_metrics_imports_no_analysis_extra():
    """train.py imports ccloss.metrics: it must load with torch and numpy only."""
    code = "import sys, ccloss.metrics; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for extra in ("sklearn", "pytorch_metric_learning", "pandas", "matplotlib", "scipy"):
        assert f"'{extra}'" not in loaded, extra


def test_upgrade_keys_reads_old_results():
    old = {"test_merged_pairs": 3, "val_pair_sep_min": 1.5, "test_merged_pair_list": [[0, 1]], "test_acc": 90.0}
    assert upgrade_keys(old) == {
        "test_pair_geometry_below_2": 3,
        "val_pair_geometry_min": 1.5,
        "test_pair_geometry_below_2_list": [[0, 1]],
        "test_acc": 90.0,
    }


# --------------------------------------------------------------------------------------------
# <split>_se_dead_units: SE hidden units whose pre-activation is <= 0 on every image
# --------------------------------------------------------------------------------------------


class PassThrough(nn.Module):
    """A backbone that hands its input to the CAM unchanged, so the squeezed vectors are chosen by hand."""

    def __init__(self, channels):
        super().__init__()
        self.out_channels = channels

    def forward(self, x):
        return x


def dead_by_hand(weight, bias, squeezed):
    """Units whose pre-activation w . z + b is <= 0 for every row z: a loop over units and images."""
    w, b, rows = weight.tolist(), bias.tolist(), squeezed.tolist()
    dead = 0
    for unit in range(len(w)):
        pre = [sum(wi * zi for wi, zi in zip(w[unit], z)) + b[unit] for z in rows]
        dead += all(p <= 0 for p in pre)
    return dead


def test_eval_record_counts_non_positive_maxima():
    se_max = torch.tensor([-2.0, 0.0, 1e-6, 3.0, -0.5])
    evaluation = {"logits": torch.eye(3), "labels": torch.arange(3), "attention": None, "se_max": se_max}
    record = eval_record(evaluation, "val")
    assert record["val_se_dead_units"] == 3  # -2, 0 (never fired) and -0.5
    assert record["se_hidden_units"] == 5
    assert record["val_acc"] == 100.0
    no_cam = eval_record({**evaluation, "se_max": None}, "test")
    assert "test_se_dead_units" not in no_cam and "se_hidden_units" not in no_cam
    assert "test_se_dead_units" not in eval_record({k: v for k, v in evaluation.items() if k != "se_max"}, "test")


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_evaluate_counts_exactly_the_dead_units(activation):
    """Six hidden units set by hand: 0 always negative, 1 always exactly zero, 2 negative but for one image
    of the second batch, 3 always positive, 4 follows channel 1, 5 negative on the non-negative channel 2.
    Dead: 0, 1 and 5 (a unit counts on its pre-activation, whatever the activation)."""
    z = torch.tensor(
        [
            [0.5, -1.0, 0.2, 0.0],  # batch 1
            [1.0, 2.0, 0.0, -1.0],
            [0.3, -0.5, 1.0, 1.0],  # batch 2
            [2.0, -3.0, 0.7, 0.5],
            [0.1, 0.4, 0.3, 0.2],
        ]
    )
    model = CCModel(
        PassThrough(4), 3, cam=True, head="linear", reduction=4, cam_activation=activation, cam_min_hidden=6
    )
    assert model.cam.hidden == 6
    weight = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, -1.0, 0.0],
        ]
    )
    bias = torch.tensor([-1.0, 0.0, -1.5, 0.25, 0.0, 0.0])  # unit 2 fires only for z[3] (2.0 - 1.5 > 0)
    with torch.no_grad():
        model.cam.fc1.weight.copy_(weight)
        model.cam.fc1.bias.copy_(bias)
    images = z[:, :, None, None].expand(-1, -1, 3, 3).contiguous()  # the global average pool gives z back
    labels = torch.tensor([0, 1, 2, 0, 1])
    loader = [(images[:2], labels[:2]), (images[2:], labels[2:])]
    evaluation = evaluate(model, loader, torch.device("cpu"), se_units=True)
    assert dead_by_hand(weight, bias, z) == 3
    torch.testing.assert_close(evaluation["se_max"], (z @ weight.T + bias).amax(dim=0))
    record = eval_record(evaluation, "test")
    assert record["test_se_dead_units"] == 3 and record["se_hidden_units"] == 6
    # the hook is gone after the evaluation: a later forward does not add to anything
    assert not model.cam.fc1._forward_hooks
    # the final record of a run carries the count
    history = [{**record, "epoch": 1, "train_acc": 50.0, "seconds": 1.0, "images_per_sec": 10.0}]
    final = final_record(history, {"acc": record["test_acc"], "epoch": 1}, "test")
    assert final["test_se_dead_units"] == 3 and final["se_hidden_units"] == 6


@pytest.mark.parametrize("k", [0, 3, 8])
def test_evaluate_dead_units_in_a_real_model(k):
    """ResNet18 (1/8 width, 64 channels) with an SE floor of 8 units: the first k get weight 0 and a
    negative bias (never fire), the others a positive bias; the count is k."""
    torch.manual_seed(0)
    model = build_model("resnet18", 10, in_channels=1, width_mult=0.125, cam_min_hidden=8)
    assert model.cam.hidden == 8
    with torch.no_grad():
        model.cam.fc1.weight.zero_()
        model.cam.fc1.bias.copy_(torch.tensor([-1.0] * k + [1.0] * (8 - k)))
    g = torch.Generator().manual_seed(1)
    loader = [(torch.randn(4, 1, 16, 16, generator=g), torch.arange(4)) for _ in range(2)]
    record = eval_record(evaluate(model, loader, torch.device("cpu"), se_units=True), "val")
    assert record["val_se_dead_units"] == k and record["se_hidden_units"] == 8


def test_evaluate_random_units_match_the_loop():
    gen = torch.Generator().manual_seed(2)
    model = CCModel(PassThrough(5), num_classes=2, cam=True, head="linear", reduction=1, cam_min_hidden=1)
    z = torch.randn(12, 5, generator=gen)
    with torch.no_grad():
        model.cam.fc1.weight.copy_(torch.randn(5, 5, generator=gen))
        model.cam.fc1.bias.copy_(torch.randn(5, generator=gen) - 2.0)
    loader = [(z[i : i + 4, :, None, None], torch.zeros(4, dtype=torch.long)) for i in range(0, 12, 4)]
    record = eval_record(evaluate(model, loader, torch.device("cpu"), se_units=True), "test")
    assert record["test_se_dead_units"] == dead_by_hand(model.cam.fc1.weight, model.cam.fc1.bias, z)


def test_evaluate_without_cam_has_no_dead_unit_count():
    model = build_model("resnet18", 10, in_channels=1, width_mult=0.125, cam=False)
    batches = [(torch.randn(2, 1, 16, 16), torch.tensor([0, 1]))]
    evaluation = evaluate(model, batches, torch.device("cpu"), se_units=True)
    assert evaluation["se_max"] is None and evaluation["attention"] is None
    with_cam = build_model("resnet18", 10, in_channels=1, width_mult=0.125)
    assert evaluate(with_cam, batches)["se_max"] is None  # the dead-unit hook is an explicit option
    assert evaluate(with_cam, batches, se_units=True)["se_max"].shape == (with_cam.cam.hidden,)
    record = eval_record(evaluation, "test")
    assert not any("se_" in key for key in record)


def test_a_set_shrunk_to_a_percent_of_its_start_is_collapsed():
    """The two lambda = 2 runs of results/small_lambda ended at 0.25 % and 0.7 % of their d_inter at
    initialisation (MAP@R ~30 %); 1 % of the start flags them, 1.5 % of it does not."""
    at_init, labels = narrow_band(1)
    reference = d_inter_by_hand(at_init, labels)
    for fraction, collapsed in ((0.0025, True), (0.007, True), (0.015, False)):
        shrunk = at_init.mean(dim=0) + (at_init - at_init.mean(dim=0)) * math.sqrt(fraction)  # d_inter x fraction
        assert d_inter_by_hand(shrunk, labels) == pytest.approx(fraction * reference, rel=1e-6)
        assert dataset_intra_inter(shrunk, labels, reference=reference)["collapsed"] is collapsed, fraction
