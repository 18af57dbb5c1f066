"""ccloss.config: TrainConfig's validation and its per-loss configs (for_loss)."""
import pytest

from ccloss.config import TrainConfig


@pytest.mark.parametrize("overrides,message", [
    ({"dataset": "imagenet"}, "digits, mnist5k, mnist, cifar100, cars196"),
    ({"backbone": "resnet50"}, "resnet18, vgg16"),
    ({"loss": "triplet"}, "ce, cc"),
    ({"device": "tpu"}, "auto, cpu, cuda"),
    ({"epochs": 0}, "positive integer"),
    ({"batch_size": 2.5}, "positive integer"),
    ({"lr": -1.0}, "lr"),
])
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides).validate()



def test_for_loss_drops_what_a_loss_does_not_take():
    base = TrainConfig(lam=1.0, form="ratio", group_size=4)
    ce = base.for_loss("ce")
    assert (ce.loss, ce.lam, ce.form, ce.group_size) == ("ce", None, None, None)
    ical = base.for_loss("ical")
    assert (ical.lam, ical.form, ical.group_size) == (1.0, None, None)

