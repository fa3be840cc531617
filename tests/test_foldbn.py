"""Folding frozen BatchNorm into convolutions while training (``oodml.train.foldbn``): the
same function and gradients as the unfolded network, the model untouched afterwards, and
refusals where folding would not be the same network."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from oodml.errors import ConfigError
from oodml.train.foldbn import BatchNormFold
from oodml.train.loop import TensorInputs, TrainConfig, seed_everything, train
from oodml.train.losses import build_loss
from oodml.train.models import EmbeddingHead, EmbeddingModel, build_model
from oodml.train.samplers import MPerClassBatchSampler


def _randomise_batchnorm(model: nn.Module, x: torch.Tensor, seed: int = 0) -> int:
    """Give every BatchNorm non-trivial statistics and affine terms (fresh ones fold to the
    identity, which would prove nothing): statistics measured on ``x`` (so activations keep
    their scale through a deep random network and gradients do not vanish), then perturbed,
    and random affine terms. Returns how many BatchNorm layers there are."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum, bn.training = None, True
    with torch.no_grad():
        model(x)
        for bn in bns:
            c = bn.num_features
            bn.momentum, bn.training = 0.1, False
            std = bn.running_var.sqrt()
            bn.running_mean.add_(0.2 * std * torch.randn(c, generator=g))
            bn.running_var.mul_(torch.rand(c, generator=g) + 0.5)
            bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(c, generator=g) * 0.2)
    return len(bns)


@pytest.mark.parametrize("backbone", ["efficientnet-lite0", "resnet50"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_folded_backbone_gives_the_same_embeddings_and_gradients(backbone, channels_last):
    """In float64 the folded network's embeddings and every parameter's gradient equal the
    unfolded ones to rounding (1e-10): the identity is exact. (In float32 a random deep
    network amplifies rounding through ReLU6 kinks, which would hide a real error.)"""
    torch.manual_seed(0)
    plain = build_model(backbone, dim=16, weights=None)
    x = torch.randn(4, 3, 32, 32)
    n_bn = _randomise_batchnorm(plain, x)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    plain = plain.double().to(memory_format=memory).train()
    folded = copy.deepcopy(plain)
    x = x.double().contiguous(memory_format=memory)
    keys = {k: v.clone() for k, v in folded.state_dict().items()}

    fold = BatchNormFold(folded)
    fold.install(x[:2])
    assert len(fold.pairs) == n_bn
    weights = torch.linspace(-1, 1, 16, dtype=torch.float64)
    outs = []
    for m in (plain, folded):
        emb = m(x)
        (emb * weights).sum().backward()
        outs.append(emb.detach())
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-10, atol=1e-12)
    grads = [{n: p.grad for n, p in m.named_parameters() if p.requires_grad}
             for m in (plain, folded)]
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > n_bn
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-9, atol=1e-11, msg=name)

    fold.remove()
    assert not any("forward" in vars(m) for m in folded.modules())
    state = folded.state_dict()
    assert state.keys() == keys.keys()
    for k, v in keys.items():
        assert torch.equal(state[k], v), k


def _tiny_backbone_model() -> EmbeddingModel:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
    )
    model = EmbeddingModel(net, EmbeddingHead(8, 4), frozen_bn=True)
    _randomise_batchnorm(model, torch.randn(8, 3, 16, 16))
    return model


def test_fold_bn_trains_the_same_parameters_and_is_recorded():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((24, 3, 16, 16)).astype(np.float32)
    labels = np.repeat(np.arange(6), 4)
    finals, configs = [], []
    for fold_bn in (False, True):
        seed_everything(0)
        model = _tiny_backbone_model()
        cfg = TrainConfig(epochs=3, batch_size=8, m=4, lr=1e-2, fold_bn=fold_bn)
        loss_fn = build_loss("multisimilarity", num_classes=6, embedding_size=4)
        train(model, loss_fn, None, TensorInputs(images, labels),
              MPerClassBatchSampler(labels, 8, seed=0, m=4), cfg, device=torch.device("cpu"))
        assert not any("forward" in vars(m) for m in model.modules())
        finals.append(model.state_dict())
        configs.append(cfg.to_dict())
    assert finals[0].keys() == finals[1].keys()
    for k, v in finals[0].items():
        torch.testing.assert_close(finals[1][k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert "fold_bn" not in configs[0] and configs[1]["fold_bn"] is True


def test_fold_bn_refuses_models_without_frozen_batchnorm():
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ConfigError, match="fold_bn=true needs a backbone"):
        BatchNormFold(EmbeddingHead(5, 3)).install(torch.randn(2, 5))
    live = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten()).train()
    before = live[1].running_mean.clone()
    with pytest.raises(ConfigError, match="fold_bn=true needs a backbone"):
        BatchNormFold(live).install(x)
    assert torch.equal(live[1].running_mean, before) and live[1].training
    stateless = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False),
                              nn.Flatten()).eval()
    with pytest.raises(ConfigError, match="fold_bn=true needs a backbone"):
        BatchNormFold(stateless).install(x)


class _SharedOutput(nn.Module):
    """A convolution whose output feeds its BatchNorm and a skip connection."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_fold_bn_refuses_a_convolution_whose_output_is_used_twice():
    model = _SharedOutput()
    _randomise_batchnorm(model, torch.randn(2, 3, 8, 8))
    with pytest.raises(ConfigError, match="changed this model's output"):
        BatchNormFold(model).install(torch.randn(2, 3, 8, 8))
    assert not any("forward" in vars(m) for m in model.modules())
    assert not model.bn.training
