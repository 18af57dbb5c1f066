"""Every training objective of the CC-Loss paper's comparison, behind one interface.

A criterion takes the model's :class:`~ccloss.models.ModelOutput` and the labels and returns a
:class:`LossOutput`: the scalar to backpropagate and its named parts for logging::

    criterion = build_criterion("cc", num_classes=100, lam=1.0)
    out = criterion(model(images), labels, step=global_step)
    out.loss.backward()
    log(out.parts)          # {"ce": ..., "cc": ..., "d_intra": ..., "d_inter": ...}

Names (``LOSSES``) and the names the paper's tables use (``PAPER_NAMES``):

=========  =========  ==============================================================
name       paper      objective
=========  =========  ==============================================================
ce         CE         cross-entropy (with or without the CAM)
cc         CC-Loss    CE + lam * CC on the channel-attention vectors (Song et al. 2020)
focal      Focal      -alpha (1 - p_t)^gamma log p_t (Lin et al. 2017)
asoftmax   A-Softmax  SphereFace margin on the cosine head (Liu et al. 2017)
mcloss     MC-Loss    CE + 1.5 L_dis + 20 L_div (Chang et al. 2020)
ical       ICAL       CE + lam * mean pairwise cosine of class vectors (Hao et al. 2019)
fical      FICAL      confusion-weighted ICAL: a reconstruction from the abstract
=========  =========  ==============================================================

Conventions: ``parts`` always holds ``"ce"`` (the plain cross-entropy of the criterion's logits);
every other entry is the *unweighted* term, so ``loss = ce + weight * term`` can be read off the
log. All parts are detached scalar tensors (no host sync happens inside the criterion). Losses
are computed in float32 (float64 stays float64) whatever the autocast state.

``build_criterion`` checks and coerces hyperparameters (papermill and the CLI pass strings);
``model_kwargs_for`` turns a criterion's :class:`ModelNeeds` into ``build_model`` arguments, so
``--loss asoftmax`` selects the cosine head and ``--loss mcloss`` the right last-stage width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .cc_loss import CCLoss

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .models import ModelOutput

__all__ = [
    "LossOutput", "ModelNeeds", "Criterion", "CrossEntropy", "CCCriterion", "FocalLoss",
    "ASoftmaxLoss", "MCLoss", "ICALoss", "FICALoss", "LOSSES", "PAPER_NAMES", "MCLOSS_XI",
    "build_criterion", "model_kwargs_for", "describe_losses", "focal_loss", "sphereface_psi",
    "sphereface_psi_from_cos", "annealed_lambda", "asoftmax_logits", "mc_channel_mask",
    "mc_discriminality", "mc_diversity", "mcloss_xi_for", "ical_penalty", "fical_penalty",
    "batch_confusion",
]


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------


@dataclass
class LossOutput:
    """What a criterion returns."""

    loss: Tensor  #: scalar to backpropagate
    parts: dict[str, Tensor]  #: named detached scalars for logging; always has "ce"


@dataclass(frozen=True)
class ModelNeeds:
    """What a loss requires of the model (read by :func:`model_kwargs_for`)."""

    cam: Optional[bool] = None  #: True: CAM required; False: forbidden; None: either
    head: Optional[str] = None  #: "cosine" / "linear" required; None: either
    channels_per_class: Optional[int] = None  #: last stage needs num_classes * this channels


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _as_compute(x: Tensor) -> Tensor:
    return x.to(_compute_dtype(x))


def _check_labels(logits: Tensor, labels: Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must be B x K, got shape {tuple(logits.shape)}")
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must be a 1-D tensor with one class index per sample ({logits.shape[0]}), "
            f"got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")


def _detached(**parts: Tensor) -> dict[str, Tensor]:
    return {key: value.detach() for key, value in parts.items()}


class Criterion(nn.Module):
    """Base class: ``forward(output, labels, step=0) -> LossOutput``.

    Subclasses set ``name``, ``paper_name`` and ``defaults`` (every hyperparameter with its
    default) and read their hyperparameters as attributes (``self.lam`` ...). ``hparam_types``
    gives the type of hyperparameters whose default is None.
    """

    name: ClassVar[str] = ""
    paper_name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    hparam_types: ClassVar[dict[str, type]] = {}
    #: one line for describe_losses()
    summary: ClassVar[str] = ""

    def __init__(self, num_classes: int, **hparams: Any) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or int(num_classes) < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.hparams: dict[str, Any] = self.resolve_hparams(hparams)
        for key, value in self.hparams.items():
            setattr(self, key, value)

    # ---- hyperparameters ----------------------------------------------------------------
    @classmethod
    def describe_hparams(cls) -> str:
        if not cls.defaults:
            return "(none)"
        return ", ".join(f"{key}={value!r}" for key, value in cls.defaults.items())

    @classmethod
    def resolve_hparams(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """Defaults updated by ``hparams``, each coerced to its default's type."""
        unknown = sorted(set(hparams) - set(cls.defaults))
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {', '.join(map(repr, unknown))} for loss {cls.name!r} "
                f"({cls.paper_name}); its hyperparameters with defaults: {cls.describe_hparams()}"
            )
        resolved = dict(cls.defaults)
        for key, value in hparams.items():
            resolved[key] = _coerce(cls, key, value)
        return resolved

    @property
    def needs(self) -> ModelNeeds:
        return ModelNeeds()

    def set_total_steps(self, total_steps: int) -> None:
        """Told by the training loop before the first step; losses with a schedule use it."""

    def extra_repr(self) -> str:
        items = ", ".join(f"{key}={value!r}" for key, value in self.hparams.items())
        return f"num_classes={self.num_classes}" + (f", {items}" if items else "")

    # ---- helpers --------------------------------------------------------------------------
    def _logits(self, output: "ModelOutput", labels: Tensor) -> Tensor:
        logits = output.logits
        _check_labels(logits, labels)
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"{self.paper_name} was built for {self.num_classes} classes but the logits have "
                f"{logits.shape[1]} columns"
            )
        return logits

    def _check_cosine_head(self, output: "ModelOutput") -> None:
        """Once per criterion: the head weights must be unit-norm rows (cosine head)."""
        if getattr(self, "_cosine_checked", False):
            return
        norms = output.head_weight.detach().float().norm(dim=1)
        if not bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-2)):
            raise ValueError(
                f"{self.paper_name} needs the cosine head (bias-free, unit-norm class weights): "
                f"build the model with head='cosine' (model_kwargs_for does this)"
            )
        self._cosine_checked = True

    def forward(self, output: "ModelOutput", labels: Tensor, step: int = 0) -> LossOutput:  # pragma: no cover
        raise NotImplementedError


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}
_NONE = {"none", "null", ""}


def _coerce(cls: type[Criterion], key: str, value: Any) -> Any:
    """Coerce ``value`` to the type of ``cls.defaults[key]`` (strings from papermill / CLI)."""
    default = cls.defaults[key]
    target: type = type(default) if default is not None else cls.hparam_types.get(key, str)
    nullable = default is None

    def fail(why: str = "") -> ValueError:
        kind = target.__name__ + (" or None" if nullable else "")
        return ValueError(
            f"hyperparameter {key!r} of loss {cls.name!r} must be {kind}, got {value!r}"
            + (f" ({why})" if why else "")
        )

    if nullable and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
        return None
    if value is None:
        raise fail()
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise fail()
    if target is int:
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, int):
            return int(value)
        try:
            number = float(value.strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise fail() from None
        if not math.isfinite(number) or number != int(number):
            raise fail("not an integer")
        return int(number)
    if target is float:
        if isinstance(value, bool):
            raise fail()
        try:
            number = float(value.strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise fail() from None
        if not math.isfinite(number):
            raise fail("not finite")
        return number
    if target is str:
        if not isinstance(value, str):
            raise fail()
        return value.strip()
    raise fail()  # pragma: no cover


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


# --------------------------------------------------------------------------------------------
# CE
# --------------------------------------------------------------------------------------------


class CrossEntropy(Criterion):
    """Plain cross-entropy on ``output.logits``: L = -log softmax(z)_y (with or without CAM)."""

    name = "ce"
    paper_name = "CE"
    defaults: ClassVar[dict[str, Any]] = {}
    summary = "cross-entropy; with --cam it is the paper's CE+CAM row"

    def forward(self, output: "ModelOutput", labels: Tensor, step: int = 0) -> LossOutput:
        ce = F.cross_entropy(_as_compute(self._logits(output, labels)), labels)
        return LossOutput(loss=ce, parts=_detached(ce=ce))


# --------------------------------------------------------------------------------------------
# CC-Loss
# --------------------------------------------------------------------------------------------


class CCCriterion(Criterion):
    """CC-Loss: L = CE + lam(t) * CC(attention, labels) (Song et al., ICPR 2020; reconstruction).

    CC = d_intra / (d_inter + eps) on the squared Euclidean distances between the
    channel-attention vectors of the batch (default form; see :mod:`ccloss.cc_loss` for the
    variants and ``normalize``). The inner :class:`~ccloss.cc_loss.CCLoss` is the attribute ``cc``.
    Needs the CAM. ``warmup`` and ``ramp`` are fractions of training: lam(t) = 0 for the first
    ``warmup``, then grows linearly to ``lam`` over the next ``ramp`` (both 0: lam throughout);
    they need the number of training steps (:meth:`set_total_steps`, which the loop calls).
    Parts: ce, cc (unweighted), d_intra, d_inter, and lam (the weight in use) with a schedule.
    """

    name = "cc"
    paper_name = "CC-Loss"
    defaults: ClassVar[dict[str, Any]] = {
        "lam": 1.0, "form": "ratio", "squared": True, "eps": 1e-3, "group_size": None, "normalize": "none",
        "warmup": 0.0, "ramp": 0.0,
    }
    hparam_types: ClassVar[dict[str, type]] = {"group_size": int}
    summary = "CE + lam * d_intra / (d_inter + eps) on the CAM's attention vectors"

    def __init__(self, num_classes: int, **hparams: Any) -> None:
        super().__init__(num_classes, **hparams)
        _require(self.lam >= 0, f"lam must be >= 0, got {self.lam}")
        _require(self.warmup >= 0 and self.ramp >= 0 and self.warmup + self.ramp <= 1,
                 f"warmup and ramp are fractions of training: both >= 0 with a sum <= 1, got {self.warmup}, {self.ramp}")
        self.cc = CCLoss(form=self.form, squared=self.squared, eps=self.eps, group_size=self.group_size,
                         normalize=self.normalize)
        self.total_steps: Optional[int] = None

    @property
    def needs(self) -> ModelNeeds:
        return ModelNeeds(cam=True)

    @property
    def scheduled(self) -> bool:
        return self.warmup > 0 or self.ramp > 0

    def set_total_steps(self, total_steps: int) -> None:
        self.total_steps = int(total_steps)

    def lam_at(self, step: int) -> float:
        """The weight of the CC term at optimisation step ``step`` (0-based)."""
        if not self.scheduled:
            return self.lam
        if self.total_steps is None:
            raise ValueError("CC-Loss with warmup/ramp needs the number of training steps: call "
                             "criterion.set_total_steps(epochs * steps_per_epoch) first (the training loop does)")
        start = self.warmup * self.total_steps
        if step < start:
            return 0.0
        if self.ramp == 0:
            return self.lam
        return self.lam * min(1.0, (step - start) / (self.ramp * self.total_steps))

    def forward(self, output: "ModelOutput", labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        if output.attention is None:
            raise ValueError("CC-Loss needs the channel attention vectors: build the model with cam=True")
        ce = F.cross_entropy(_as_compute(logits), labels)
        stats = self.cc.statistics(output.attention, labels)
        lam = self.lam_at(step)
        parts = dict(ce=ce, cc=stats.loss, d_intra=stats.d_intra, d_inter=stats.d_inter)
        if self.scheduled:
            parts["lam"] = torch.tensor(lam, device=ce.device)
        return LossOutput(loss=ce + lam * stats.loss, parts=_detached(**parts))


# --------------------------------------------------------------------------------------------
# Focal loss
# --------------------------------------------------------------------------------------------


def focal_loss(logits: Tensor, labels: Tensor, gamma: float = 2.0, alpha: float = 1.0) -> Tensor:
    """FL = mean over the batch of -alpha (1 - p_t)^gamma log p_t (Lin et al., ICCV 2017).

    The gradient flows through the modulating factor too (as in the paper). gamma=0, alpha=1 is
    the cross-entropy.
    """
    _check_labels(logits, labels)
    log_p = F.log_softmax(_as_compute(logits), dim=1)
    log_pt = log_p.gather(1, labels[:, None].long()).squeeze(1)
    if gamma == 0:
        return -alpha * log_pt.mean()
    # clamp: (1 - p_t)^gamma has an infinite derivative at p_t = 1 when gamma < 1
    modulator = (-torch.expm1(log_pt)).clamp_min(torch.finfo(log_pt.dtype).tiny) ** gamma
    return (-alpha * modulator * log_pt).mean()


class FocalLoss(Criterion):
    """Focal loss: FL = -alpha (1 - p_t)^gamma log p_t, batch mean (Lin et al., ICCV 2017).

    Scalar alpha (no class balancing), gamma=2, alpha=1 as in METHOD.md. Parts: ce, focal.
    """

    name = "focal"
    paper_name = "Focal"
    defaults: ClassVar[dict[str, Any]] = {"gamma": 2.0, "alpha": 1.0}
    summary = "-alpha (1 - p_t)^gamma log p_t"

    def __init__(self, num_classes: int, **hparams: Any) -> None:
        super().__init__(num_classes, **hparams)
        _require(self.gamma >= 0, f"gamma must be >= 0, got {self.gamma}")
        _require(self.alpha > 0, f"alpha must be > 0, got {self.alpha}")

    def forward(self, output: "ModelOutput", labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        loss = focal_loss(logits, labels, self.gamma, self.alpha)
        ce = F.cross_entropy(_as_compute(logits), labels)
        return LossOutput(loss=loss, parts=_detached(ce=ce, focal=loss))


# --------------------------------------------------------------------------------------------
# A-Softmax (SphereFace)
# --------------------------------------------------------------------------------------------


def sphereface_psi(theta: Tensor, m: int) -> Tensor:
    """psi(theta) = (-1)^k cos(m theta) - 2k on [k pi/m, (k+1) pi/m], k = floor(m theta / pi).

    SphereFace (Liu et al., CVPR 2017): a monotonically decreasing extension of cos(m theta) to
    [0, pi]; m = 1 gives cos(theta). k is clamped to [0, m - 1] so theta = pi stays on the last
    interval (psi is continuous, so this changes nothing).
    """
    m = int(m)
    k = torch.floor(m * theta.detach() / math.pi).clamp(0, m - 1)
    sign = 1.0 - 2.0 * torch.remainder(k, 2)
    return sign * torch.cos(m * theta) - 2.0 * k


def _chebyshev(x: Tensor, m: int) -> Tensor:
    """T_m(x), so that T_m(cos theta) = cos(m theta), by the three-term recurrence."""
    if m == 0:
        return torch.ones_like(x)
    previous, current = torch.ones_like(x), x
    for _ in range(m - 1):
        previous, current = current, 2.0 * x * current - previous
    return current


def sphereface_psi_from_cos(cos_theta: Tensor, m: int) -> Tensor:
    """psi(theta) from cos(theta), as the official code and its PyTorch port compute it.

    cos(m theta) is the Chebyshev polynomial T_m(cos theta), so the gradient never goes through
    acos (whose derivative is infinite at cos = +-1); k = floor(m acos(cos theta) / pi) is a
    constant for autograd.
    """
    m = int(m)
    theta = torch.acos(cos_theta.detach().clamp(-1.0, 1.0))
    k = torch.floor(m * theta / math.pi).clamp(0, m - 1)
    sign = 1.0 - 2.0 * torch.remainder(k, 2)
    return sign * _chebyshev(cos_theta, m) - 2.0 * k


def annealed_lambda(
    step: int | float, lambda_base: float = 1500.0, lambda_gamma: float = 0.1, lambda_min: float = 5.0
) -> float:
    """lambda_a = max(lambda_min, lambda_base / (1 + lambda_gamma * step)) (SphereFace training).

    ``step`` is the 0-based global optimisation step: step 0 gives lambda_base.
    """
    return max(float(lambda_min), float(lambda_base) / (1.0 + float(lambda_gamma) * float(step)))


def asoftmax_logits(
    logits: Tensor, features: Tensor, labels: Tensor, margin: int, lambda_a: float
) -> Tensor:
    """Logits with the A-Softmax target logit |x| (lambda_a cos + psi) / (1 + lambda_a).

    ``logits`` are the cosine head's |x| cos(theta_j); ``features`` the head's input x. The
    non-target logits stay |x| cos(theta_j).
    """
    _check_labels(logits, labels)
    logits = _as_compute(logits)
    norm = features.to(logits.dtype).norm(dim=1, keepdim=True)
    cos_theta = (logits / norm.clamp_min(1e-12)).clamp(-1.0, 1.0)
    target = F.one_hot(labels.long(), logits.shape[1]).bool()
    cos_t = cos_theta.gather(1, labels[:, None].long())
    psi_t = sphereface_psi_from_cos(cos_t, margin)
    target_logit = norm * (lambda_a * cos_t + psi_t) / (1.0 + lambda_a)
    return torch.where(target, target_logit, logits)


class ASoftmaxLoss(Criterion):
    """A-Softmax (SphereFace, Liu et al. CVPR 2017): CE on logits whose target entry is
    f_y = |x| (lambda_a cos theta_y + psi(theta_y)) / (1 + lambda_a).

    psi(theta) = (-1)^k cos(m theta) - 2k, k = floor(m theta / pi); lambda_a =
    max(lambda_min, lambda_base / (1 + lambda_gamma * step)) anneals from plain softmax to the
    margin, as in the official code (github.com/wy1iu/sphereface) and its PyTorch port
    (clcarwin/sphereface_pytorch, which counts iterations from 1; here ``step`` is 0-based).
    Needs the cosine head (logits |x| cos theta, unit-norm class weights, no bias). At test time
    the model's plain cosine logits are the prediction; the criterion always applies the margin.
    Parts: ce (of the plain logits), asoftmax, lambda_a.
    """

    name = "asoftmax"
    paper_name = "A-Softmax"
    defaults: ClassVar[dict[str, Any]] = {
        "margin": 4, "lambda_base": 1500.0, "lambda_gamma": 0.1, "lambda_min": 5.0,
    }
    summary = "SphereFace margin psi(theta) on the cosine head, annealed lambda"

    def __init__(self, num_classes: int, **hparams: Any) -> None:
        super().__init__(num_classes, **hparams)
        _require(1 <= self.margin <= 10, f"margin must be an integer in [1, 10], got {self.margin}")
        _require(self.lambda_base >= 0 and self.lambda_min >= 0, "lambda_base and lambda_min must be >= 0")
        _require(self.lambda_gamma >= 0, f"lambda_gamma must be >= 0, got {self.lambda_gamma}")

    @property
    def needs(self) -> ModelNeeds:
        return ModelNeeds(head="cosine")

    def lambda_at(self, step: int | float) -> float:
        return annealed_lambda(step, self.lambda_base, self.lambda_gamma, self.lambda_min)

    def forward(self, output: "ModelOutput", labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        self._check_cosine_head(output)
        lambda_a = self.lambda_at(step)
        modified = asoftmax_logits(logits, output.features, labels, self.margin, lambda_a)
        loss = F.cross_entropy(modified, labels)
        ce = F.cross_entropy(_as_compute(logits), labels)
        return LossOutput(
            loss=loss,
            parts=_detached(ce=ce, asoftmax=loss, lambda_a=torch.tensor(lambda_a, device=loss.device)),
        )


# --------------------------------------------------------------------------------------------
# MC-Loss
# --------------------------------------------------------------------------------------------

#: Channels per class (xi) of MC-Loss per dataset. Rule: xi = max(3, 512 // num_classes).
#: - Every row of the paper's table uses the same backbone; at 512 channels the loss changes
#:   nothing else when K * xi fits in 512, so xi = 512 // K: 10 classes -> 51 (510 channels),
#:   100 classes -> 5 (500 channels).
#: - The official code (PRIS-CV/Mutual-Channel-Loss) uses xi = 3 for the 200 CUB classes and
#:   widens VGG16's / ResNet18's last stage to 600 channels; its ResNet50 script uses 10-11 per
#:   class in 2048 channels. 3 is its smallest group, so Cars-196 gets xi = 3 and a last stage
#:   widened to 588 channels, mirroring the official CUB-200 setting.
MCLOSS_XI: dict[str, int] = {"digits": 51, "mnist": 51, "cifar100": 5, "cars196": 3}

_MCLOSS_BASE_WIDTH = 512


def _dataset_key(dataset: str) -> str:
    return "".join(ch for ch in str(dataset).lower() if ch.isalnum())


def mcloss_xi_for(dataset: Optional[str], num_classes: int, base_width: int = _MCLOSS_BASE_WIDTH) -> int:
    """Channels per class for MC-Loss: ``MCLOSS_XI[dataset]`` or max(3, base_width // num_classes).

    ``dataset`` is matched ignoring case, '-' and '_' ("CIFAR-100" -> "cifar100"); an unknown
    dataset (or None) uses the rule, which the table follows.
    """
    if dataset is not None and _dataset_key(dataset) in MCLOSS_XI:
        return MCLOSS_XI[_dataset_key(dataset)]
    return max(3, int(base_width) // int(num_classes))


def mc_channel_mask(
    num_classes: int,
    xi: int,
    mask_fraction: float = 0.5,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
) -> Tensor:
    """Random channel mask of MC-Loss: (num_classes * xi,) of 0/1 floats.

    In each group of xi channels, floor(xi * mask_fraction) channels chosen uniformly at random
    are 0. Drawn on the CPU from ``generator`` (default: the global RNG), then moved to
    ``device``. The official code keeps 2 of 3 channels (drops 1 = floor(3 * 0.5)).
    """
    num_classes, xi = int(num_classes), int(xi)
    n_drop = int(math.floor(xi * float(mask_fraction)))
    keys = torch.rand(num_classes, xi, generator=generator)
    ranks = keys.argsort(dim=1).argsort(dim=1)
    mask = (ranks >= n_drop).float().reshape(-1)
    return mask if device is None else mask.to(device)


def _grouped(feature_map: Tensor, num_classes: int, xi: int) -> Tensor:
    if feature_map.dim() != 4:
        raise ValueError(f"MC-Loss needs a B x C x H x W feature map, got shape {tuple(feature_map.shape)}")
    needed = num_classes * xi
    if feature_map.shape[1] < needed:
        raise ValueError(
            f"MC-Loss with {num_classes} classes and xi={xi} needs at least {needed} channels in the "
            f"last stage, the feature map has {feature_map.shape[1]}: build the model with "
            f"last_stage_width={needed} (model_kwargs_for does this)"
        )
    return _as_compute(feature_map[:, :needed])


def mc_discriminality(
    feature_map: Tensor, labels: Tensor, num_classes: int, xi: int, mask: Tensor
) -> Tensor:
    """L_dis: CE on B x K scores = spatial mean of the cross-channel max of each masked group.

    The first num_classes * xi channels are used; group k is channels [k xi, (k + 1) xi).
    Masked channels are multiplied by 0 before the max (as in the official code).
    """
    fmap = _grouped(feature_map, num_classes, xi)
    b, _, h, w = fmap.shape
    masked = fmap * mask.to(fmap)[None, :, None, None]
    scores = masked.reshape(b, num_classes, xi, h, w).amax(dim=2).mean(dim=(2, 3))
    return F.cross_entropy(scores, labels)


def mc_diversity(feature_map: Tensor, num_classes: int, xi: int) -> Tensor:
    """Mean diversity of MC-Loss, in [1, min(xi, H W)].

    Per channel a softmax over the H W positions; per group the max over its xi channels at
    each position, summed over positions; mean over the classes and the batch. It is xi when
    the channels of each group peak at different positions and 1 when they coincide.
    """
    fmap = _grouped(feature_map, num_classes, xi)
    b, _, h, w = fmap.shape
    spatial = F.softmax(fmap.reshape(b, num_classes * xi, h * w), dim=2)
    return spatial.reshape(b, num_classes, xi, h * w).amax(dim=2).sum(dim=2).mean()


class MCLoss(Criterion):
    """MC-Loss (Chang et al., TIP 2020): L = CE + alpha_dis * L_dis + beta_div * (1 - div / xi).

    The last feature map has num_classes * xi channels grouped per class (extra channels are
    ignored). L_dis = CE on the spatial mean of the cross-channel max of each group after a
    random channel mask (one mask for the whole batch, a new one each call, floor(xi *
    mask_fraction) channels dropped per group); div = mean over classes and batch of the
    summed cross-channel max of the per-channel spatial softmax (see :func:`mc_diversity`).
    This is exactly the official code (PRIS-CV/Mutual-Channel-Loss, CUB-200-2011*.py):
    ``loss = ce + alpha_1 * loss_1 + beta_1 * loss_2`` with ``loss_2 = 1 - mean(div) / cnum``,
    beta_1 = 20, alpha_1 = 1.5 (ResNet18 script; the VGG16 script's default is 2.0), and a
    mask keeping 2 of 3 channels. ``xi=None`` (default) picks ``mcloss_xi_for(None, K)`` =
    max(3, 512 // K); pass ``xi=mcloss_xi_for(dataset, K)`` to follow ``MCLOSS_XI``.

    Masks come from ``generator`` (attribute or constructor argument) or, by default, the
    global RNG, which the training loop seeds and checkpoints.
    Parts: ce, mc_dis, mc_div (= 1 - div / xi), mc_diversity (div itself, in [1, xi]).
    """

    name = "mcloss"
    paper_name = "MC-Loss"
    defaults: ClassVar[dict[str, Any]] = {
        "xi": None, "mask_fraction": 0.5, "alpha_dis": 1.5, "beta_div": 20.0,
    }
    hparam_types: ClassVar[dict[str, type]] = {"xi": int}
    summary = "CE + alpha_dis L_dis + beta_div (1 - div/xi); xi=None: max(3, 512 // K) (MCLOSS_XI)"

    def __init__(self, num_classes: int, generator: Optional[torch.Generator] = None, **hparams: Any) -> None:
        super().__init__(num_classes, **hparams)
        if self.xi is None:
            self.xi = mcloss_xi_for(None, self.num_classes)
            self.hparams["xi"] = self.xi
        _require(self.xi >= 1, f"xi must be >= 1, got {self.xi}")
        _require(0 <= self.mask_fraction < 1, f"mask_fraction must be in [0, 1), got {self.mask_fraction}")
        _require(self.alpha_dis >= 0 and self.beta_div >= 0, "alpha_dis and beta_div must be >= 0")
        self.generator = generator

    @property
    def needs(self) -> ModelNeeds:
        return ModelNeeds(channels_per_class=self.xi)

    def forward(self, output: "ModelOutput", labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        fmap = output.feature_map
        mask = mc_channel_mask(self.num_classes, self.xi, self.mask_fraction, self.generator, fmap.device)
        dis = mc_discriminality(fmap, labels, self.num_classes, self.xi, mask)
        diversity = mc_diversity(fmap, self.num_classes, self.xi)
        div_term = 1.0 - diversity / self.xi
        ce = F.cross_entropy(_as_compute(logits), labels)
        loss = ce + self.alpha_dis * dis + self.beta_div * div_term
        return LossOutput(
            loss=loss, parts=_detached(ce=ce, mc_dis=dis, mc_div=div_term, mc_diversity=diversity)
        )


# --------------------------------------------------------------------------------------------
# ICAL and FICAL
# --------------------------------------------------------------------------------------------


def _unit_rows(head_weight: Tensor) -> Tensor:
    if head_weight.dim() != 2:
        raise ValueError(f"head_weight must be K x C, got shape {tuple(head_weight.shape)}")
    return F.normalize(_as_compute(head_weight), dim=1)


def ical_penalty(head_weight: Tensor) -> Tensor:
    """||sum_j w_j||^2 / K^2 for unit-norm class vectors w_j (rows are re-normalised).

    Equals the mean of cos(w_i, w_j) over all K^2 ordered pairs, diagonal included:
    = 1/K + (K - 1)/K * (mean off-diagonal cosine). O(K C), no K x K matrix.
    """
    w = _unit_rows(head_weight)
    k = w.shape[0]
    return w.sum(dim=0).pow(2).sum() / (k * k)


class ICALoss(Criterion):
    """ICAL (Hao et al., AAAI 2019): L = CE + (lam / K^2) ||sum_j w_j||^2.

    w_j are the unit-norm class vectors of the cosine head (``output.head_weight``); the penalty
    is the mean pairwise cosine of the class vectors over all ordered pairs including i = j
    (see :func:`ical_penalty`), pushing the classes apart in angle. lam = 5 (with augmentation).
    Needs the cosine head. Parts: ce, ical (the unweighted penalty).
    """

    name = "ical"
    paper_name = "ICAL"
    defaults: ClassVar[dict[str, Any]] = {"lam": 5.0}
    summary = "CE + lam * mean pairwise cosine of unit class vectors (||sum w||^2 / K^2)"

    def __init__(self, num_classes: int, **hparams: Any) -> None:
        super().__init__(num_classes, **hparams)
        _require(self.lam >= 0, f"lam must be >= 0, got {self.lam}")

    @property
    def needs(self) -> ModelNeeds:
        return ModelNeeds(head="cosine")

    def forward(self, output: "ModelOutput", labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        self._check_cosine_head(output)
        ce = F.cross_entropy(_as_compute(logits), labels)
        penalty = ical_penalty(output.head_weight)
        return LossOutput(loss=ce + self.lam * penalty, parts=_detached(ce=ce, ical=penalty))


def batch_confusion(probs: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class mean of the softmax rows: (K x K rates, K bool "class present in the batch")."""
    one_hot = F.one_hot(labels.long(), num_classes).to(probs.dtype)  # B x K
    counts = one_hot.sum(dim=0)  # K
    sums = one_hot.T @ probs  # K x K: row i sums p(. | x) over samples of class i
    return sums / counts.clamp_min(1.0)[:, None], counts > 0


def fical_penalty(head_weight: Tensor, confusion: Tensor) -> Tensor:
    """sum_{i != j} W_ij cos_ij / sum_{i != j} W_ij with W = (R + R^T) / 2 detached.

    With uniform R this is the mean off-diagonal pairwise cosine of the class vectors.
    """
    w = _unit_rows(head_weight)
    k = w.shape[0]
    rates = confusion.detach().to(w.dtype)
    weights = 0.5 * (rates + rates.T)
    weights = weights.masked_fill(torch.eye(k, dtype=torch.bool, device=w.device), 0.0)
    cosines = w @ w.T
    return (weights * cosines).sum() / weights.sum().clamp_min(1e-12)


class FICALoss(Criterion):
    """FICAL (Focal ICAL, VCIP 2019), a reconstruction from the abstract:
    L = CE + lam * sum_{i != j} W_ij cos_ij / sum_{i != j} W_ij.

    Only the abstract is known: class-pair cosines weighted by a confusion rate evaluated at each
    iteration. Here R_ij = mean softmax probability of class j on the batch's samples of class i,
    smoothed by an EMA (``momentum``; 0 = the current batch only; rows of classes absent from the
    batch keep their value), W = (R + R^T) / 2 detached, diagonal excluded. R lives in the
    buffer ``confusion`` (checkpointed with the criterion's state_dict), initialised to 1/K, so
    with the initial R the penalty is ICAL's mean off-diagonal cosine. R is updated before the
    penalty is computed, and only in training mode with gradients enabled (evaluation under
    ``torch.no_grad()`` or ``criterion.eval()`` leaves it alone). Needs the cosine head.
    Parts: ce, fical (the unweighted penalty).
    """

    name = "fical"
    paper_name = "FICAL"
    defaults: ClassVar[dict[str, Any]] = {"lam": 5.0, "momentum": 0.9}
    summary = "reconstruction from the abstract: CE + lam * confusion-weighted pairwise cosine"

    confusion: Tensor

    def __init__(self, num_classes: int, **hparams: Any) -> None:
        super().__init__(num_classes, **hparams)
        _require(self.lam >= 0, f"lam must be >= 0, got {self.lam}")
        _require(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        k = self.num_classes
        self.register_buffer("confusion", torch.full((k, k), 1.0 / k))

    @property
    def needs(self) -> ModelNeeds:
        return ModelNeeds(head="cosine")

    @torch.no_grad()
    def update_confusion(self, logits: Tensor, labels: Tensor) -> None:
        probs = F.softmax(logits.detach().to(self.confusion.dtype), dim=1)
        rates, present = batch_confusion(probs, labels.to(probs.device), self.num_classes)
        blended = self.momentum * self.confusion + (1.0 - self.momentum) * rates
        self.confusion.copy_(torch.where(present[:, None], blended, self.confusion))

    def forward(self, output: "ModelOutput", labels: Tensor, step: int = 0) -> LossOutput:
        logits = self._logits(output, labels)
        self._check_cosine_head(output)
        if self.confusion.device != logits.device:
            self.confusion = self.confusion.to(logits.device)
        if self.training and torch.is_grad_enabled():
            self.update_confusion(logits, labels)
        ce = F.cross_entropy(_as_compute(logits), labels)
        penalty = fical_penalty(output.head_weight, self.confusion)
        return LossOutput(loss=ce + self.lam * penalty, parts=_detached(ce=ce, fical=penalty))


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

LOSSES: dict[str, type[Criterion]] = {
    cls.name: cls for cls in (CrossEntropy, CCCriterion, FocalLoss, ASoftmaxLoss, MCLoss, ICALoss, FICALoss)
}
PAPER_NAMES: dict[str, str] = {name: cls.paper_name for name, cls in LOSSES.items()}


def _lookup(name: str) -> type[Criterion]:
    if isinstance(name, str):
        key = name.strip().lower()
        if key in LOSSES:
            return LOSSES[key]
        for loss_name, paper in PAPER_NAMES.items():  # the paper's spelling works too
            if key == paper.lower():
                return LOSSES[loss_name]
    raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}")


def build_criterion(name: str, num_classes: int, **hparams: Any) -> Criterion:
    """The criterion called ``name`` (a key of LOSSES or a paper name) with ``hparams``.

    Unknown names and hyperparameters raise ValueError listing the valid ones; values are
    coerced to the type of their default ("0.5" -> 0.5, "false" -> False, "none" -> None).
    """
    return _lookup(name)(num_classes, **hparams)


_HEADS = ("linear", "cosine")


def model_kwargs_for(
    criterion: Criterion | str,
    num_classes: int,
    *,
    cam: bool,
    head: Optional[str] = None,
    last_stage_width: Optional[int] = None,
    default_last_width: int,
) -> dict[str, Any]:
    """``{"cam", "head", "last_stage_width"}`` for ``build_model``, adjusted to the loss's needs.

    A loss that needs the cosine head gets it when ``head`` is None; MC-Loss gets a last stage of
    num_classes * xi channels when ``last_stage_width`` is None. Impossible combinations raise a
    ValueError saying what to change.
    """
    if isinstance(criterion, str):
        criterion = build_criterion(criterion, num_classes)
    needs = criterion.needs
    paper = criterion.paper_name
    if head is not None and head not in _HEADS:
        raise ValueError(f"unknown head {head!r}; valid heads: {', '.join(_HEADS)}")

    cam = bool(cam)
    if needs.cam is True and not cam:
        if criterion.name == "cc":
            raise ValueError("CC-Loss needs the channel attention vectors: drop --no-cam")
        raise ValueError(f"{paper} needs the channel attention module (CAM): drop --no-cam")
    if needs.cam is False and cam:
        raise ValueError(f"{paper} cannot be used with the channel attention module: pass --no-cam")

    if needs.head is not None:
        if head is not None and head != needs.head:
            raise ValueError(
                f"{paper} needs the {needs.head} head"
                + (" (bias-free, unit-norm class weights)" if needs.head == "cosine" else "")
                + f", got head={head!r}: drop --head {head} or pass --head {needs.head}"
            )
        head = needs.head
    elif head is None:
        head = "linear"

    if needs.channels_per_class is not None:
        xi = needs.channels_per_class
        required = int(num_classes) * xi
        if last_stage_width is None:
            last_stage_width = required
        elif int(last_stage_width) < required:
            raise ValueError(
                f"{paper} with xi={xi} needs a last stage of at least {num_classes} x {xi} = "
                f"{required} channels, got last_stage_width={last_stage_width}: drop "
                f"--last-stage-width (it then becomes {required}), raise it, or lower xi"
            )
    elif last_stage_width is None:
        last_stage_width = int(default_last_width)
    return {"cam": cam, "head": head, "last_stage_width": int(last_stage_width)}


def describe_losses() -> str:
    """A short text table of the losses (name, paper name, hyperparameters with defaults)."""
    rows = [("name", "paper", "hyperparameters (defaults)", "objective")]
    for name, cls in LOSSES.items():
        rows.append((name, cls.paper_name, cls.describe_hparams(), cls.summary))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
    return "\n".join(lines)
