"""Embedding models: a backbone plus a linear (or small MLP) head with L2-normalised output.

Backbones: ``resnet50`` (torchvision, frozen BatchNorm as in the ooDML study),
``efficientnet-lite0`` (the architecture and offline weights of ``oodml.features``, BatchNorm
frozen too: DML batches are small), or any torchvision classification model by name.
Weights: ``"imagenet"`` (the torch hub cache; torchvision's file is downloaded there, hash
checked, when missing and downloads are on, see ``oodml.hub``), a state-dict file, or ``None``
for random init. In head-only mode the model is the head alone, fed precomputed backbone features.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from oodml import hub
from oodml.errors import ConfigError, first_line
from oodml.features.extractors import load_state_dict
from oodml.fileio import check_input_file
from oodml.hub import Progress
from oodml.registry import Registry

MAX_HEAD_PARAMS = 2**27
"""Parameters of an embedding head (134M: 512 MiB of float32 weights, about 2 GiB while
training with adam's two moments and the gradients)."""


def head_params(in_dim: int, dim: int, hidden: int = 0) -> int:
    """Weights and biases of :class:`EmbeddingHead`: in*dim + dim, or in*h + h + h*dim + dim."""
    if hidden > 0:
        return in_dim * hidden + hidden + hidden * dim + dim
    return in_dim * dim + dim


def check_head_size(in_dim: int, dim: int, hidden: int = 0) -> None:
    """Refuse, before anything is allocated, a head above :data:`MAX_HEAD_PARAMS`."""
    n = head_params(in_dim, dim, hidden)
    if n > MAX_HEAD_PARAMS:
        shape = f"{in_dim} x {hidden} x {dim}" if hidden > 0 else f"{in_dim} x {dim}"
        raise ConfigError(
            f"embed_dim={dim}, hidden={hidden} make a {shape} head of {n:,} parameters "
            f"(~{16 * n / 2**30:.1f} GiB to train); at most {MAX_HEAD_PARAMS:,}: lower embed_dim "
            "or hidden"
        )


class EmbeddingHead(nn.Module):
    """Linear map (``hidden == 0``) or one-hidden-layer MLP to ``dim``, then L2 normalisation."""

    def __init__(self, in_dim: int, dim: int = 128, hidden: int = 0) -> None:
        super().__init__()
        check_head_size(in_dim, dim, hidden)
        self.in_dim, self.dim, self.hidden = in_dim, dim, hidden
        if hidden > 0:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim)
            )
        else:
            self.net = nn.Linear(in_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x).float(), dim=1)


class EmbeddingModel(nn.Module):
    """Backbone (pooled features) followed by an ``EmbeddingHead``."""

    def __init__(self, backbone: nn.Module, head: EmbeddingHead, frozen_bn: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.frozen_bn = frozen_bn
        if frozen_bn:
            freeze_batchnorm(backbone)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.backbone(x), 1))

    def train(self, mode: bool = True) -> EmbeddingModel:
        super().train(mode)
        if self.frozen_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self


def freeze_batchnorm(module: nn.Module) -> None:
    """Fix BatchNorm statistics and affine parameters (kept in eval mode by EmbeddingModel)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


BackboneBuilder = Callable[[str | None, "bool | None"], tuple[nn.Module, int]]
BACKBONES: Registry[BackboneBuilder] = Registry("backbone")
FROZEN_BN = {"resnet50", "efficientnet-lite0"}


def _strip_classifier(model: nn.Module) -> tuple[nn.Module, int]:
    """Replace the last Linear layer by Identity; returns the model and its feature size."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = (name, mod)
    if last is None:
        raise ConfigError(f"cannot find a classifier layer in {type(model).__name__}")
    name, linear = last
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Identity())
    return model, linear.in_features


def _weights_enum(arch: str) -> list:
    try:
        return list(torchvision.models.get_model_weights(arch))
    except (ValueError, AttributeError, KeyError):
        raise ConfigError(f"torchvision has no ImageNet weights for {arch!r}") from None


def torchvision_weights_url(arch: str) -> tuple[str, str]:
    """(file name, url) of the ImageNet weights torchvision lists first for ``arch`` (for
    resnet50 the IMAGENET1K_V1 file of the ooDML study)."""
    url = _weights_enum(arch)[0].url
    return url.rsplit("/", 1)[-1], url


def _hub_weights_file(
    arch: str, offline: bool | None = None, progress: Progress | None = None
) -> Path:
    """The first of torchvision's ImageNet weight files for ``arch`` found in the hub cache,
    else the first one listed, downloaded (hash prefix from its name) when downloads are on."""
    cache = hub.checkpoints_dir()
    present = [cache / w.url.rsplit("/", 1)[-1] for w in _weights_enum(arch)]
    found = next((f for f in present if f.is_file()), None)
    if found is not None:
        return found
    filename, url = torchvision_weights_url(arch)
    return hub.fetch_checkpoint(
        filename,
        url,
        what=f"backbone {arch!r}",
        where=f"torchvision's ImageNet weights for {arch}",
        offline=offline,
        progress=progress,
        also="use --backbone-weights random",
    )


def load_state(
    model: nn.Module,
    weights: str | None,
    arch: str,
    *,
    offline: bool | None = None,
    progress: Progress | None = None,
) -> None:
    """Load ``weights``: None = random init, 'imagenet' = torch hub cache (downloaded when
    missing unless offline), else a file."""
    if weights is None or weights == "random":
        return
    path = _hub_weights_file(arch, offline, progress) if weights == "imagenet" else Path(weights)
    check_input_file(path, f"{arch} weights file", "put the file there, pass "
                     "--backbone-weights PATH, or use --backbone-weights random")
    state = load_state_dict(path)
    if isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ConfigError(
            f"weights {path} do not fit backbone {arch!r}: {first_line(exc)}"
        ) from None
    bad = [k for k in missing if "fc." not in k and "classifier" not in k and "head" not in k]
    if bad:
        raise ConfigError(f"weights {path} do not fit backbone {arch!r}: missing {bad[:3]}")


def _torchvision_backbone(
    arch: str,
    weights: str | None,
    offline: bool | None = None,
    progress: Progress | None = None,
) -> tuple[nn.Module, int]:
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError(
            f"unknown backbone {arch!r}; choose one of: {', '.join(BACKBONES.names())} "
            "or a torchvision classification model name (e.g. resnet18, convnext_tiny)"
        )
    model = torchvision.models.get_model(arch, weights=None)
    load_state(model, weights, arch, offline=offline, progress=progress)
    return _strip_classifier(model)


@BACKBONES.register("resnet50")
def _resnet50(weights: str | None, offline: bool | None = None) -> tuple[nn.Module, int]:
    return _torchvision_backbone("resnet50", weights, offline)


@BACKBONES.register("efficientnet-lite0")
def _efficientnet_lite0(
    weights: str | None, offline: bool | None = None
) -> tuple[nn.Module, int]:
    from oodml.features.efficientnet_lite import FEATURE_DIM, EfficientNetLite0
    from oodml.features.extractors import EXTRACTORS, load_strict

    net = EfficientNetLite0()
    if weights not in (None, "random"):
        spec = EXTRACTORS.get("efficientnet-lite0")
        load_strict(net, spec.locate_weights(None if weights == "imagenet" else weights))
    net._fc = nn.Identity()
    return net, FEATURE_DIM


def build_backbone(
    name: str, weights: str | None = "imagenet", *, offline: bool | None = None
) -> tuple[nn.Module, int]:
    """A pooled-feature backbone and its output size. ImageNet weights missing from the hub
    cache are downloaded unless ``offline`` (None: ``$OODML_OFFLINE``)."""
    if name in BACKBONES:
        return BACKBONES.get(name)(weights, offline)
    return _torchvision_backbone(name, weights, offline)


def build_model(
    backbone: str | None,
    *,
    in_dim: int | None = None,
    dim: int = 128,
    hidden: int = 0,
    weights: str | None = "imagenet",
    offline: bool | None = None,
) -> nn.Module:
    """Head-only (``backbone=None``, needs ``in_dim``) or backbone + head."""
    if backbone is None:
        if in_dim is None:
            raise ValueError("head-only model needs in_dim")
        return EmbeddingHead(in_dim, dim, hidden)
    net, out_dim = build_backbone(backbone, weights, offline=offline)
    return EmbeddingModel(net, EmbeddingHead(out_dim, dim, hidden), frozen_bn=backbone in FROZEN_BN)


def head_of(model: nn.Module) -> EmbeddingHead:
    return model if isinstance(model, EmbeddingHead) else model.head  # type: ignore[return-value]
