"""ccloss: CC-Loss (Channel Correlation Loss, ICPR 2020), its baselines, and a tutorial.

Import what you need::

    from ccloss import CCLoss, ChannelAttention, build_model
"""
from .attention import ChannelAttention
from .cc_loss import FORMS, CCLoss, CCStats, cc_statistics, pairwise_distances
from .models import BACKBONES, ModelOutput, build_model

__version__ = "0.1.0"
__all__ = [
    "BACKBONES", "FORMS", "CCLoss", "CCStats", "ChannelAttention", "ModelOutput",
    "build_model", "cc_statistics", "pairwise_distances", "__version__",
]
