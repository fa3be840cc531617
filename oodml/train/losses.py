"""DML losses by short name: every supervised loss of pytorch-metric-learning, plus softmax
cross-entropy and center loss, and any user loss by import path (``mypkg.losses:MyLoss``).

Every loss built here is an ``nn.Module`` called as ``loss(embeddings, labels, indices_tuple)``
with integer labels in ``[0, num_classes)``. Losses that hold proxies or classifier weights
have parameters, which the training loop optimises together with the model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from torch import nn

from oodml.config import parse_kv
from oodml.errors import ConfigError
from oodml.registry import Registry
from oodml.train.config import check_args, import_object


@dataclass(frozen=True)
class LossInfo:
    """How to build one loss: the factory, which constructor arguments we supply from the data
    (``num_classes`` / ``embedding_size``), defaults for its required arguments, and whether it
    accepts a miner's ``indices_tuple``, needs the same number of samples per class, and
    learns only from pairs of images of one class in a batch (``needs_pairs``: pair, triplet
    and ranking losses; with one image per class a batch holds no positive pair and their
    gradient is zero, or pushes negatives apart only).
    """

    factory: Callable[..., nn.Module]
    provided: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    uses_miner: bool = True
    equal_class_counts: bool = False
    description: str = ""
    needs_pairs: bool = False


LOSSES: Registry[LossInfo] = Registry("loss")

_CLASSES = {"num_classes": "num_classes", "embedding_size": "embedding_size"}

# pml class name -> (our name, constructor args we supply, defaults for required args, miner?)
_PML: dict[str, tuple[str, Mapping[str, str], Mapping[str, Any], bool]] = {
    "AngularLoss": ("angular", {}, {}, True),
    "ArcFaceLoss": ("arcface", _CLASSES, {}, True),
    "CircleLoss": ("circle", {}, {}, True),
    "ContrastiveLoss": ("contrastive", {}, {}, True),
    "CosFaceLoss": ("cosface", _CLASSES, {}, True),
    "DynamicSoftMarginLoss": ("dynamicsoftmargin", {}, {}, True),
    "FastAPLoss": ("fastap", {}, {}, True),
    "GeneralizedLiftedStructureLoss": ("generalizedlifted", {}, {}, True),
    "HistogramLoss": ("histogram", {}, {}, True),
    "InstanceLoss": ("instance", {}, {}, False),
    "IntraPairVarianceLoss": ("intrapairvariance", {}, {}, True),
    "LargeMarginSoftmaxLoss": ("largemarginsoftmax", _CLASSES, {}, True),
    "LiftedStructureLoss": ("lifted", {}, {}, True),
    "MarginLoss": ("margin", {"num_classes": "num_classes"}, {}, True),
    "MultiSimilarityLoss": ("multisimilarity", {}, {}, True),
    "NCALoss": ("nca", {}, {}, True),
    "NPairsLoss": ("npairs", {}, {}, True),
    "NTXentLoss": ("ntxent", {}, {}, True),
    "NormalizedSoftmaxLoss": ("normalizedsoftmax", _CLASSES, {}, True),
    "P2SGradLoss": (
        "p2sgrad",
        {"descriptors_dim": "embedding_size", "num_classes": "num_classes"},
        {},
        False,
    ),
    "PNPLoss": ("pnp", {}, {}, False),
    "ProxyAnchorLoss": ("proxyanchor", _CLASSES, {}, True),
    "ProxyNCALoss": ("proxynca", _CLASSES, {}, True),
    "RankedListLoss": ("rankedlist", {}, {"margin": 0.4, "Tn": 1.0}, False),
    "SignalToNoiseRatioContrastiveLoss": ("snrcontrastive", {}, {}, True),
    "SmoothAPLoss": ("smoothap", {}, {}, True),
    "SoftTripleLoss": ("softtriple", _CLASSES, {}, True),
    "SphereFaceLoss": ("sphereface", _CLASSES, {}, True),
    "SubCenterArcFaceLoss": ("subcenterarcface", _CLASSES, {}, True),
    "SupConLoss": ("supcon", {}, {}, True),
    "ThresholdConsistentMarginLoss": ("thresholdconsistentmargin", {}, {}, True),
    "TripletMarginLoss": ("triplet", {}, {}, True),
    "TupletMarginLoss": ("tupletmargin", {}, {}, True),
    "CentroidTripletLoss": ("centroidtriplet", {}, {}, False),
}

EXCLUDED: dict[str, str] = {
    "VICRegLoss": "self-supervised: needs two augmented views per image and ignores class labels",
    "SelfSupervisedLoss": "wrapper for unlabelled augmented pairs, not class-labelled DML",
    "ManifoldLoss": "ignores class labels (random meta-classes); pytorch-metric-learning "
    "refuses labels for it",
    "CrossBatchMemory": "a wrapper around another loss (memory bank), not a loss by itself",
    "MultipleLosses": "a combinator of other losses, not a loss by itself",
    "BaseLossWrapper": "abstract base class",
    "BaseMetricLossFunction": "abstract base class",
    "GenericPairLoss": "abstract base class",
    "EmbeddingRegularizerMixin": "mixin, not a loss",
    "WeightRegularizerMixin": "mixin, not a loss",
    "WeightMixin": "mixin, not a loss",
}

for _cls_name, (_name, _provided, _defaults, _miner) in _PML.items():
    _cls = getattr(pml_losses, _cls_name, None)
    if _cls is not None:
        LOSSES.add(
            _name,
            LossInfo(
                _cls,
                _provided,
                _defaults,
                uses_miner=_miner,
                equal_class_counts=_cls_name == "SmoothAPLoss",
                description=f"pytorch_metric_learning.losses.{_cls_name}",
                # no class weights or proxies (none supplied from num_classes), or margin's
                # per-class beta only: the loss is built from pairs within the batch
                needs_pairs=not _provided or _cls_name == "MarginLoss",
            ),
        )


def pml_loss_classes() -> list[str]:
    """Names of every loss class that pytorch_metric_learning.losses exports."""
    return sorted(
        n
        for n, c in inspect.getmembers(pml_losses, inspect.isclass)
        if issubclass(c, nn.Module) or n.endswith("Mixin")
    )


class SoftmaxLoss(nn.Module):
    """Plain softmax cross-entropy over a linear classifier on the embedding.

    ``scale`` multiplies the logits: embeddings are L2-normalised, so unscaled logits are small.
    """

    def __init__(self, num_classes: int, embedding_size: int, scale: float = 16.0) -> None:
        super().__init__()
        self.classifier = nn.Linear(embedding_size, num_classes)
        self.scale = scale

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.scale * self.classifier(embeddings)

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, indices_tuple: Any = None
    ) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings), labels)


class CenterLoss(SoftmaxLoss):
    """Center loss (Wen et al. 2016) plus softmax: CE + ``weight``/2 * ||e - c_y||^2, with
    learnable class centers optimised by gradient like the classifier."""

    def __init__(
        self, num_classes: int, embedding_size: int, scale: float = 16.0, weight: float = 0.1
    ) -> None:
        super().__init__(num_classes, embedding_size, scale)
        self.centers = nn.Parameter(torch.randn(num_classes, embedding_size) / embedding_size**0.5)
        self.weight = weight

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, indices_tuple: Any = None
    ) -> torch.Tensor:
        ce = super().forward(embeddings, labels)
        pull = (embeddings - self.centers[labels]).pow(2).sum(dim=1).mean()
        return ce + 0.5 * self.weight * pull


LOSSES.add(
    "softmax",
    LossInfo(SoftmaxLoss, _CLASSES, uses_miner=False, description="oodml softmax cross-entropy"),
)
LOSSES.add(
    "center",
    LossInfo(CenterLoss, _CLASSES, uses_miner=False, description="oodml center loss + softmax"),
)


def loss_info(name: str) -> LossInfo:
    """The registered loss, or a user ``torch.nn.Module`` subclass from
    ``'package.module:Class'`` (importing runs that module's code; nothing else is accepted)."""
    if ":" in name:
        obj = import_object(name, "loss", base=nn.Module, base_name="torch.nn.Module")
        params = inspect.signature(obj).parameters
        provided = {k: v for k, v in _CLASSES.items() if k in params}
        return LossInfo(obj, provided, description=name)
    return LOSSES.get(name)


def resolve_loss_args(name: str, args: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Parse and type-check loss arguments against the loss constructor (ConfigError if bad)."""
    info = loss_info(name)
    raw = parse_kv(args, "loss argument") if isinstance(args, str) or args is None else dict(args)
    checked = check_args(info.factory, raw, what=f"loss {name!r}", reserved=info.provided)
    return {**info.defaults, **checked}


def build_loss(
    name: str,
    *,
    num_classes: int,
    embedding_size: int,
    args: str | Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build loss ``name`` for ``num_classes`` training classes and ``embedding_size``-d
    embeddings; ``args`` overrides its defaults (``'alpha=2,beta=50'`` or a dict)."""
    info = loss_info(name)
    kwargs = resolve_loss_args(name, args)
    sizes = {"num_classes": num_classes, "embedding_size": embedding_size}
    kwargs.update({arg: sizes[src] for arg, src in info.provided.items()})
    try:
        loss = info.factory(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"cannot build loss {name!r} with {kwargs}: {exc}") from None
    if not isinstance(loss, nn.Module):
        raise ConfigError(f"loss {name!r} did not build a torch.nn.Module")
    return loss
