"""Fold frozen BatchNorm into the convolution before it while training.

A BatchNorm layer in eval mode (the frozen BN of the ooDML study's ``resnet50_frozen`` and of
oodml's ``efficientnet-lite0``) is a fixed per-channel affine map of the convolution's
output y = conv(x, W) (+ c):

    bn(y) = s * (y - mu) + beta,   s = gamma / sqrt(var + eps),

and a convolution is linear in its weight, so

    bn(conv(x, W) + c) = conv(x, s * W) + (beta + s * (c - mu)).

One convolution with scaled weights replaces a convolution plus two passes over its output
(BatchNorm forward, and the backward that scales the gradient by ``s``). The scaled weight
is recomputed from ``W``, ``gamma`` and ``beta`` at every step inside autograd, so gradients
reach the same parameters as before (chain rule through s * W) and the function is the same
up to float rounding. Parameters, buffers and the state dict are untouched: folding only
replaces the two modules' forwards for the duration of training.

Pairs are found by watching one forward pass on a probe batch: a BatchNorm in eval mode with
running statistics whose input is the output of an ``nn.Conv2d`` (or oodml's ``SameConv2d``)
with zero padding. The folded model is then checked against the unfolded one on the probe,
so a convolution whose output also feeds something other than its BatchNorm is caught
instead of silently changing the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from oodml.errors import ConfigError
from oodml.features.efficientnet_lite import SameConv2d

FOLDABLE_CONVS = (nn.Conv2d, SameConv2d)


def _scale_shift(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        s = s * bn.weight
    shift = -bn.running_mean * s
    if bn.affine:
        shift = shift + bn.bias
    if conv.bias is not None:
        shift = shift + conv.bias * s
    return s, shift


def _folded_forward(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        s, shift = _scale_shift(conv, bn)
        if isinstance(conv, SameConv2d):
            x = conv.pad(x)
        w = conv.weight * s.reshape(-1, 1, 1, 1)
        return F.conv2d(x, w, shift, conv.stride, conv.padding, conv.dilation, conv.groups)

    return forward


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode, and afterwards each back in its own mode (a model-wide
    ``train()`` would unfreeze BatchNorm layers frozen one by one)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def find_pairs(model: nn.Module, probe: torch.Tensor) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """(conv, bn) pairs where a BatchNorm that is in eval mode now (frozen) takes a foldable
    convolution's output, seen in one forward pass of ``probe`` in eval mode (no gradients,
    so no running statistics move)."""
    frozen = {id(m) for m in model.modules()
              if type(m) is nn.BatchNorm2d and not m.training and m.running_var is not None}
    outputs: dict[int, tuple[torch.Tensor, nn.Conv2d]] = {}
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []

    def on_conv(mod: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        outputs[id(out)] = (out, mod)  # type: ignore[assignment]

    def on_bn(mod: nn.Module, inputs: tuple) -> None:
        hit = outputs.get(id(inputs[0]))
        if hit is not None and hit[0] is inputs[0] and id(mod) in frozen:
            pairs.append((hit[1], mod))  # type: ignore[arg-type]

    handles = []
    for m in model.modules():
        if type(m) in FOLDABLE_CONVS and m.padding_mode == "zeros":
            handles.append(m.register_forward_hook(on_conv))
        elif type(m) is nn.BatchNorm2d:
            handles.append(m.register_forward_pre_hook(on_bn))
    try:
        with _eval_mode(model), torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    seen: set[int] = set()
    unique = []
    for conv, bn in pairs:
        if id(bn) not in seen:
            seen.add(id(bn))
            unique.append((conv, bn))
    return unique


class BatchNormFold:
    """Folds a model's frozen BatchNorm layers into their convolutions until ``remove``.

    ``install(probe)`` finds the pairs, replaces their forwards and checks the folded model
    against the unfolded one on ``probe``; it raises ``ConfigError`` when the model has no
    frozen BatchNorm after a convolution, or when folding changes its output.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []

    @property
    def installed(self) -> bool:
        return bool(self.pairs)

    def install(self, probe: torch.Tensor) -> None:
        if self.installed:
            return
        pairs = find_pairs(self.model, probe)
        if not pairs:
            raise ConfigError(
                "fold_bn=true needs a backbone whose BatchNorm is frozen after its "
                "convolutions (resnet50, efficientnet-lite0); set fold_bn=false"
            )
        with _eval_mode(self.model), torch.no_grad():
            plain = self.model(probe)
            self.pairs = pairs
            for conv, bn in pairs:
                conv.forward = _folded_forward(conv, bn)  # type: ignore[method-assign]
                bn.forward = _identity  # type: ignore[method-assign]
            folded = self.model(probe)
        scale = float(plain.abs().max()) or 1.0
        if not torch.allclose(folded, plain, rtol=1e-3, atol=1e-4 * scale):
            self.remove()
            raise ConfigError(
                "fold_bn=true changed this model's output (a convolution's output feeds more "
                "than its BatchNorm); set fold_bn=false"
            )

    def remove(self) -> None:
        for conv, bn in self.pairs:
            del conv.forward
            del bn.forward
        self.pairs = []
