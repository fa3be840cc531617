"""Tuple miners by name (pytorch-metric-learning miners, plus a maximum-loss miner).

A miner is called as ``miner(embeddings, labels) -> indices_tuple`` and its output is passed
to the loss; ``build_miner(None)`` means no mining.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from torch import nn

from oodml.config import parse_kv
from oodml.errors import ConfigError
from oodml.registry import Registry
from oodml.train.config import check_args, import_object


@dataclass(frozen=True)
class MinerInfo:
    """A miner factory, the constructor whose signature checks user arguments, and fixed
    arguments (e.g. the triplet type of ``triplet-semihard``)."""

    factory: Callable[..., nn.Module]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


MINERS: Registry[MinerInfo] = Registry("miner")


class MaximumLossMiner(nn.Module):
    """Draws ``num_trials`` random subsets of ``output_size`` triplets and keeps the subset with
    the largest triplet margin loss (the miner of pytorch-metric-learning 1.x, removed in 2.x)."""

    def __init__(self, num_trials: int = 5, output_size: int = 100, margin: float = 0.2) -> None:
        super().__init__()
        self.num_trials = num_trials
        self.output_size = output_size
        self.margin = margin

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, p, n = lmu.get_all_triplets_indices(labels)
        if len(a) <= self.output_size:
            return a, p, n
        with torch.no_grad():
            emb = embeddings.detach()
            ap = (emb[a] - emb[p]).norm(dim=1)
            an = (emb[a] - emb[n]).norm(dim=1)
            per_triplet = torch.relu(ap - an + self.margin)
            best, best_loss = None, -1.0
            for _ in range(self.num_trials):
                pick = torch.randperm(len(a), device=a.device)[: self.output_size]
                value = float(per_triplet[pick].mean())
                if value > best_loss:
                    best, best_loss = pick, value
        assert best is not None
        return a[best], p[best], n[best]


def _add(name: str, factory: Callable[..., nn.Module], **fixed: Any) -> None:
    MINERS.add(name, MinerInfo(factory, fixed, getattr(factory, "__name__", name)))


_add("batch-hard", pml_miners.BatchHardMiner)
_add("batch-easy-hard", pml_miners.BatchEasyHardMiner)
_add("triplet-hard", pml_miners.TripletMarginMiner, type_of_triplets="hard")
_add("triplet-semihard", pml_miners.TripletMarginMiner, type_of_triplets="semihard")
_add("triplet-easy", pml_miners.TripletMarginMiner, type_of_triplets="easy")
_add("triplet-all", pml_miners.TripletMarginMiner, type_of_triplets="all")
_add("distance-weighted", pml_miners.DistanceWeightedMiner)
_add("multisimilarity", pml_miners.MultiSimilarityMiner)
_add("pair-margin", pml_miners.PairMarginMiner)
_add("angular", pml_miners.AngularMiner)
_add("hdc", pml_miners.HDCMiner)
_add("uniform-histogram", pml_miners.UniformHistogramMiner)
_add("maximum-loss", MaximumLossMiner)


def miner_info(name: str) -> MinerInfo:
    """The registered miner, or a user miner class from ``'package.module:Class'``: a subclass
    of ``torch.nn.Module`` (pytorch-metric-learning's ``BaseMiner`` is one); importing runs that
    module's code, nothing else is accepted."""
    if ":" in name:
        miner = import_object(name, "miner", base=nn.Module, base_name="torch.nn.Module")
        return MinerInfo(miner, description=name)
    return MINERS.get(name)


def resolve_miner_args(name: str, args: str | Mapping[str, Any] | None) -> dict[str, Any]:
    info = miner_info(name)
    raw = parse_kv(args, "miner argument") if isinstance(args, str) or args is None else dict(args)
    return check_args(info.factory, raw, what=f"miner {name!r}", reserved=info.fixed)


def build_miner(name: str | None, args: str | Mapping[str, Any] | None = None) -> nn.Module | None:
    """Build miner ``name`` (None -> no miner); ``args`` like ``'margin=0.1'`` or a dict."""
    if not name:
        if args:
            raise ConfigError("miner_args given without a miner")
        return None
    info = miner_info(name)
    kwargs = {**resolve_miner_args(name, args), **info.fixed}
    try:
        return info.factory(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"cannot build miner {name!r} with {kwargs}: {exc}") from None
