"""ccloss: CC-Loss (Channel Correlation Loss, ICPR 2020), its baselines, and a tutorial.

Import what you need; each name loads only its own module (``from ccloss import CCLoss`` imports
torch and the loss, nothing else)::

    from ccloss import CCLoss, CCModel, build_model, build_criterion, fit

- the loss: :class:`CCLoss` (the CC term on a batch of attention vectors), :func:`cc_statistics`;
- the model: :class:`ChannelAttention` (the SE block), :class:`CCModel` (any backbone + CAM + head),
  :func:`build_model` (ResNet18 / VGG16-BN, or your module);
- the objectives: :func:`build_criterion` (``"cc"`` is CE + lambda * CC; the paper's baselines);
- the loop: :func:`train_one_epoch` and :func:`evaluate` (any iterable of ``(x, y)``), :func:`fit`
  (a run directory that resumes);
- class structure measured independently of the loss (``pip install ccloss[analysis]``):
  :func:`precision_at_1_and_map_at_r`, :func:`unseparated_pairs`, :func:`knn_accuracy`, :func:`probe_accuracy`.

The learner's path: :mod:`ccloss.attention`, :mod:`ccloss.cc_loss` (then :mod:`ccloss.cc_forms`),
:mod:`ccloss.models`, :mod:`ccloss.losses`, :mod:`ccloss.config`, :mod:`ccloss.data`, :mod:`ccloss.train`,
:mod:`ccloss.measures`. Sweeps, reports and the study live beside the package in the repository's
``experiments/`` folder.
"""

from importlib import import_module
from typing import Any

__version__ = "0.4.0"

#: Public name -> the module that defines it (PEP 562: loaded on first use).
_WHERE = {
    "ChannelAttention": "attention",
    "CCLoss": "cc_loss",
    "CCStats": "cc_loss",
    "FORMS": "cc_loss",
    "NORMALIZATIONS": "cc_loss",
    "cc_ratio": "cc_loss",
    "cc_statistics": "cc_loss",
    "pairwise_distances": "cc_loss",
    "TrainConfig": "config",
    "LOSSES": "losses",
    "build_criterion": "losses",
    "BACKBONES": "models",
    "CCModel": "models",
    "ModelOutput": "models",
    "build_model": "models",
    "repo_root": "paths",
    "knn_accuracy": "measures",
    "probe_accuracy": "measures",
    "pair_geometry": "measures",
    "pair_separation": "measures",
    "precision_at_1_and_map_at_r": "measures",
    "unseparated_pairs": "measures",
    "evaluate": "train",
    "fit": "train",
    "train_one_epoch": "train",
}
__all__ = [*_WHERE, "__version__"]
_SUBMODULES = {"analysis", "data", "losses", "measures", "metrics", "models", "plots", "train", "config", "cli"}


def __getattr__(name: str) -> Any:
    """``ccloss.NAME`` imports the one module that defines NAME, the first time it is asked for."""
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    if name not in _WHERE:
        raise AttributeError(f"module 'ccloss' has no attribute {name!r}")
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
