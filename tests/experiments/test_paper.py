"""experiments.paper: the paper's published numbers, looked up by our names."""

import pytest

from experiments.paper import paper_accuracy, paper_table


def test_paper_lookups():
    assert paper_accuracy("cc", "vgg16", "mnist", True) == (98.32, 0.08)
    assert paper_accuracy("ce", "resnet18", "cars196", False) == (85.77, None)
    assert paper_accuracy("mcloss", "resnet18", "cars196", False) is None  # empty cell in the paper
    assert paper_accuracy("cc", "resnet18", "digits", True) is None  # no digits in the paper
    assert len(paper_table("losses")) == 42
    with pytest.raises(ValueError, match="losses, cam, lambda, batch_size"):
        paper_table("nope")
