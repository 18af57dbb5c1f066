"""ccloss: CC-Loss (Channel Correlation Loss, ICPR 2020), its baselines, and a tutorial.

Import what you need::

    from ccloss import CCLoss, ChannelAttention, build_model, build_criterion

The learner's path: :mod:`ccloss.attention` (the SE block), :mod:`ccloss.cc_loss` (the loss),
:mod:`ccloss.models`, :mod:`ccloss.losses` (every objective of the paper's table),
:mod:`ccloss.data` and :mod:`ccloss.loader`, :mod:`ccloss.train`. The experiment machinery is in
:mod:`ccloss.experiments`, the plumbing in :mod:`ccloss.runtime`.
"""

from .attention import ChannelAttention
from .cc_loss import FORMS, NORMALIZATIONS, CCLoss, CCStats, cc_ratio, cc_statistics, pairwise_distances
from .config import TrainConfig
from .losses import LOSSES, build_criterion
from .models import BACKBONES, ModelOutput, build_model
from .paths import repo_root

__version__ = "0.2.0"
__all__ = [
    "BACKBONES",
    "FORMS",
    "LOSSES",
    "NORMALIZATIONS",
    "CCLoss",
    "CCStats",
    "ChannelAttention",
    "ModelOutput",
    "TrainConfig",
    "build_criterion",
    "build_model",
    "cc_ratio",
    "cc_statistics",
    "pairwise_distances",
    "repo_root",
    "__version__",
]
