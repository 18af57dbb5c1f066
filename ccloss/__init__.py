"""ccloss: CC-Loss (Channel Correlation Loss, ICPR 2020), its baselines, and a tutorial.

Import what you need::

    from ccloss import CCLoss, CCModel, build_model, build_criterion, fit

- the loss: :class:`CCLoss` (the CC term on a batch of attention vectors), :func:`cc_statistics`;
- the model: :class:`ChannelAttention` (the SE block), :class:`CCModel` (any backbone + CAM + head),
  :func:`build_model` (ResNet18 / VGG16-BN, or your module);
- the objectives: :func:`build_criterion` (``"cc"`` is CE + lambda * CC; the paper's baselines);
- the loop: :func:`train_one_epoch` and :func:`evaluate` (any iterable of ``(x, y)``), :func:`fit`
  (a run directory that resumes);
- class structure measured independently of the loss: :func:`knn_accuracy`, :func:`probe_accuracy`,
  :func:`pair_separation`.

The learner's path: :mod:`ccloss.attention`, :mod:`ccloss.cc_loss` (then :mod:`ccloss.cc_forms`),
:mod:`ccloss.models`, :mod:`ccloss.losses`, :mod:`ccloss.data` and :mod:`ccloss.loader`,
:mod:`ccloss.train`. Sweeps and reports are in :mod:`ccloss.experiments` (``pip install
ccloss[notebooks]``), the plumbing in :mod:`ccloss.runtime`.
"""

from .attention import ChannelAttention
from .cc_loss import FORMS, NORMALIZATIONS, CCLoss, CCStats, cc_ratio, cc_statistics, pairwise_distances
from .config import TrainConfig
from .losses import LOSSES, build_criterion
from .models import BACKBONES, CCModel, ModelOutput, build_model
from .paths import repo_root
from .separation import knn_accuracy, pair_separation, probe_accuracy
from .train import evaluate, fit, train_one_epoch

__version__ = "0.3.0"
__all__ = [
    "BACKBONES",
    "FORMS",
    "LOSSES",
    "NORMALIZATIONS",
    "CCLoss",
    "CCModel",
    "CCStats",
    "ChannelAttention",
    "ModelOutput",
    "TrainConfig",
    "build_criterion",
    "build_model",
    "cc_ratio",
    "cc_statistics",
    "evaluate",
    "fit",
    "knn_accuracy",
    "pair_separation",
    "pairwise_distances",
    "probe_accuracy",
    "repo_root",
    "train_one_epoch",
    "__version__",
]
