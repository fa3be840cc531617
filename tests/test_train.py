"""Losses, miners, samplers, models and the training loop (oodml.train)."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from torch import nn

from oodml.config import parse_kv
from oodml.errors import ConfigError
from oodml.features.extract import resolve_device
from oodml.train.config import check_args, import_object
from oodml.train.loop import (
    TensorInputs,
    TrainConfig,
    embed,
    seed_everything,
    train,
)
from oodml.train.losses import (
    EXCLUDED,
    LOSSES,
    CenterLoss,
    SoftmaxLoss,
    build_loss,
    loss_info,
    pml_loss_classes,
)
from oodml.train.miners import MINERS, MaximumLossMiner, build_miner
from oodml.train.models import EmbeddingHead, build_backbone, build_model
from oodml.train.samplers import MPerClassBatchSampler, RandomBatchSampler, build_sampler

N_CLASSES, PER_CLASS, DIM = 4, 4, 8


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_CLASSES * PER_CLASS, DIM, generator=g, requires_grad=True)
    labels = torch.arange(N_CLASSES).repeat_interleave(PER_CLASS)
    return x, labels


# --- losses -----------------------------------------------------------------------------


def test_every_pml_loss_is_registered_or_excluded_with_a_reason():
    registered = {info.factory for info in (LOSSES.get(n) for n in LOSSES.names())}
    for name in pml_loss_classes():
        cls = getattr(pml_losses, name)
        assert cls in registered or name in EXCLUDED, f"{name} is neither registered nor excluded"
        assert not (cls in registered and name in EXCLUDED)
    assert {"softmax", "center", "multisimilarity", "triplet", "proxyanchor"} <= set(LOSSES)
    assert all(len(why) > 10 for why in EXCLUDED.values())


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_runs_forward_and_backward(name):
    torch.manual_seed(0)
    x, labels = batch()
    loss_fn = build_loss(name, num_classes=N_CLASSES, embedding_size=DIM)
    value = loss_fn(F.normalize(x, dim=1), labels)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0, f"{name} gave a zero gradient on a generic batch"
    for p in loss_fn.parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all()


def test_classification_losses_own_trainable_parameters():
    for name in ("proxyanchor", "arcface", "softtriple", "softmax", "center", "proxynca"):
        loss_fn = build_loss(name, num_classes=N_CLASSES, embedding_size=DIM)
        assert sum(p.numel() for p in loss_fn.parameters() if p.requires_grad) >= N_CLASSES * DIM


def test_softmax_loss_is_cross_entropy_of_scaled_linear_logits():
    x, labels = batch()
    loss_fn = SoftmaxLoss(N_CLASSES, DIM, scale=3.0)
    w, b = loss_fn.classifier.weight, loss_fn.classifier.bias
    logits = 3.0 * (x @ w.T + b)
    expected = -(logits.log_softmax(1)[torch.arange(len(labels)), labels]).mean()
    torch.testing.assert_close(loss_fn(x, labels), expected)


def test_center_loss_adds_half_weighted_squared_distance_to_centres():
    x, labels = batch()
    loss_fn = CenterLoss(N_CLASSES, DIM, scale=2.0, weight=0.5)
    ce = SoftmaxLoss.forward(loss_fn, x, labels)
    diff = (x - loss_fn.centers[labels]).detach()
    pull = float(diff.pow(2).sum())
    expected = ce.item() + 0.5 * 0.5 * pull / len(x)
    assert loss_fn(x, labels).item() == pytest.approx(expected, rel=1e-5)


def test_loss_args_are_parsed_and_checked_against_the_signature():
    loss_fn = build_loss("multisimilarity", num_classes=2, embedding_size=4, args="alpha=3,beta=40")
    assert (loss_fn.alpha, loss_fn.beta) == (3.0, 40.0)
    triplet = build_loss("triplet", num_classes=2, embedding_size=4, args="margin=1")
    assert isinstance(triplet.margin, float)  # int widened to the default's float type
    with pytest.raises(ConfigError, match="no argument 'gamma'.*alpha=2"):
        build_loss("multisimilarity", num_classes=2, embedding_size=4, args="gamma=1")
    with pytest.raises(ConfigError, match="margin='big' has type str; expected float"):
        build_loss("triplet", num_classes=2, embedding_size=4, args="margin=big")
    with pytest.raises(ConfigError, match="expected bool"):
        build_loss("triplet", num_classes=2, embedding_size=4, args="swap=1")
    with pytest.raises(ConfigError, match="no argument 'num_classes'"):
        build_loss("arcface", num_classes=2, embedding_size=4, args="num_classes=9")
    with pytest.raises(ConfigError, match="unknown loss 'nope'.*multisimilarity"):
        build_loss("nope", num_classes=2, embedding_size=4)


def test_parse_kv_literals_and_errors():
    assert parse_kv("a=1,b=2.5,c=True,d=none,e=word,f=(1, 2)") == {
        "a": 1,
        "b": 2.5,
        "c": True,
        "d": None,
        "e": "word",
        "f": (1, 2),
    }
    assert parse_kv("") == {} and parse_kv(None) == {}
    for bad in ("a", "1x=2", "a=1,a=2"):
        with pytest.raises(ConfigError):
            parse_kv(bad)

    def f(x: int, y: float = 1.0, name: str = "n") -> None: ...

    assert check_args(f, {"x": 3, "y": 2}, what="f") == {"x": 3, "y": 2.0}
    with pytest.raises(ConfigError, match="expected int"):
        check_args(f, {"x": 1.5}, what="f")


USER_LOSS = '''
import torch
class PullLoss(torch.nn.Module):
    """Mean squared distance of each embedding to its learnable class centre."""
    def __init__(self, num_classes, embedding_size, weight=1.0):
        super().__init__()
        self.c = torch.nn.Parameter(torch.zeros(num_classes, embedding_size))
        self.weight = weight
    def forward(self, emb, labels, indices_tuple=None):
        return self.weight * (emb - self.c[labels]).pow(2).sum(1).mean()
'''


def test_user_loss_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "userpkg_losses.py").write_text(USER_LOSS)
    monkeypatch.syspath_prepend(str(tmp_path))
    loss_fn = build_loss(
        "userpkg_losses:PullLoss", num_classes=3, embedding_size=5, args="weight=2.0"
    )
    assert loss_fn.c.shape == (3, 5) and loss_fn.weight == 2.0
    emb = torch.ones(2, 5)
    assert float(loss_fn(emb, torch.tensor([0, 1]))) == pytest.approx(2.0 * 5)
    with pytest.raises(ConfigError, match="no argument 'w'"):
        build_loss("userpkg_losses:PullLoss", num_classes=3, embedding_size=5, args="w=1")
    with pytest.raises(ConfigError, match="cannot import module"):
        loss_info("no_such_module_xyz:Loss")
    with pytest.raises(ConfigError, match="has no 'Nope'"):
        import_object("userpkg_losses:Nope")
    sys.modules.pop("userpkg_losses", None)


# --- miners ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MINERS.names())
def test_every_miner_returns_valid_tuples_that_a_loss_accepts(name):
    torch.manual_seed(0)
    x, labels = batch()
    emb = F.normalize(x, dim=1)
    miner = build_miner(name)
    tuples = miner(emb, labels)
    assert len(tuples) in (3, 4)
    if len(tuples) == 3:
        a, p, n = tuples
        assert (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all()
        assert (a != p).all()
    else:
        a1, p, a2, n = tuples
        assert (labels[a1] == labels[p]).all() and (labels[a2] != labels[n]).all()
    loss = build_loss("contrastive", num_classes=N_CLASSES, embedding_size=DIM)(emb, labels, tuples)
    assert torch.isfinite(loss)


def test_triplet_miner_types_and_miner_errors():
    x, labels = batch()
    emb = F.normalize(x, dim=1)
    all_t = build_miner("triplet-all", "margin=10.0")(emb, labels)
    assert len(all_t[0]) == N_CLASSES * PER_CLASS * (PER_CLASS - 1) * (N_CLASSES - 1) * PER_CLASS
    with pytest.raises(ConfigError, match="unknown miner 'hardest'.*triplet-semihard"):
        build_miner("hardest")
    with pytest.raises(ConfigError, match="no argument 'type_of_triplets'"):
        build_miner("triplet-hard", "type_of_triplets=all")
    assert build_miner(None) is None


def test_maximum_loss_miner_keeps_the_worst_subset():
    torch.manual_seed(0)
    x, labels = batch()
    emb = F.normalize(x, dim=1).detach()
    miner = MaximumLossMiner(num_trials=20, output_size=30, margin=0.5)
    a, p, n = miner(emb, labels)
    assert len(a) == 30
    chosen = torch.relu((emb[a] - emb[p]).norm(dim=1) - (emb[a] - emb[n]).norm(dim=1) + 0.5).mean()
    all_a, all_p, all_n = build_miner("triplet-all", "margin=10.0")(emb, labels)
    overall = torch.relu(
        (emb[all_a] - emb[all_p]).norm(dim=1) - (emb[all_a] - emb[all_n]).norm(dim=1) + 0.5
    ).mean()
    assert chosen >= overall  # the best of 20 random subsets beats the average triplet


# --- samplers ----------------------------------------------------------------------------


def test_m_per_class_batches_hold_m_distinct_images_of_each_class():
    labels = np.repeat(np.arange(10), [5, 6, 7, 8, 9, 5, 6, 7, 8, 9])
    s = MPerClassBatchSampler(labels, batch_size=12, seed=3, m=3)
    batches = list(s.batches(0))
    assert len(batches) == len(labels) // 12
    for b in batches:
        assert len(b) == 12 and len(set(b.tolist())) == 12
        classes, counts = np.unique(labels[b], return_counts=True)
        assert len(classes) == 4 and (counts == 3).all()
    again = list(MPerClassBatchSampler(labels, 12, 3, m=3).batches(0))
    assert all((x == y).all() for x, y in zip(batches, again, strict=True))
    other = list(s.batches(1))
    assert any((x != y).any() for x, y in zip(batches, other, strict=True))


def test_sampler_errors_before_training():
    labels = np.repeat(np.arange(4), [4, 4, 4, 2])
    with pytest.raises(ConfigError, match="cannot hold m=4 samples per class"):
        MPerClassBatchSampler(labels, 10, 0, m=4)
    with pytest.raises(ConfigError, match="fewer than m=3 images"):
        MPerClassBatchSampler(labels, 6, 0, m=3)
    with pytest.raises(ConfigError, match="holds only one class"):
        MPerClassBatchSampler(labels, 2, 0, m=2)
    with pytest.raises(ConfigError, match="needs 5 classes but the training set has 4"):
        MPerClassBatchSampler(labels, 10, 0, m=2)
    with pytest.raises(ConfigError, match="unknown sampler"):
        build_sampler("balanced", labels, 4, 0)
    r = RandomBatchSampler(labels, 4, 0)
    got = np.concatenate(list(r.batches(0)))
    assert len(got) == 12 and len(set(got.tolist())) == 12


# --- models ------------------------------------------------------------------------------


def test_heads_output_unit_vectors():
    x = torch.randn(5, 20)
    for hidden in (0, 16):
        out = EmbeddingHead(20, 6, hidden)(x)
        assert out.shape == (5, 6)
        torch.testing.assert_close(out.norm(dim=1), torch.ones(5))


def test_resnet50_backbone_keeps_batchnorm_frozen_while_training():
    model = build_model("resnet50", dim=16, weights=None)
    model.train()
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert all(not p.requires_grad for m in bns for p in m.parameters())
    before = bns[0].running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(bns[0].running_mean, before)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 16)


def test_torchvision_backbone_by_name_and_weight_errors(tmp_path):
    net, dim = build_backbone("resnet18", weights=None)
    assert dim == 512 and net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 512)
    torch.save(net.state_dict(), tmp_path / "r18.pt")
    loaded, _ = build_backbone("resnet18", weights=str(tmp_path / "r18.pt"))
    for (k, v), (_, w) in zip(net.state_dict().items(), loaded.state_dict().items(), strict=True):
        torch.testing.assert_close(v, w, msg=k)
    with pytest.raises(ConfigError, match="not found"):
        build_backbone("resnet18", weights=str(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match="unknown backbone 'resnet-9000'"):
        build_backbone("resnet-9000", weights=None)


def test_unreadable_or_unfitting_backbone_weights_are_one_line_errors(tmp_path):
    """A file torch cannot read with weights_only, a pickle of something else, and a state
    dict of the wrong shapes: each a one-line ConfigError naming the file, and none suggests
    turning weights_only off."""
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello text\n")
    not_a_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], not_a_dict)
    wrong = tmp_path / "wrong.pt"
    state = build_backbone("resnet18", weights=None)[0].state_dict()
    state["conv1.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save({"state_dict": state}, wrong)
    for path in (garbage, text_file, not_a_dict, wrong):
        with pytest.raises(ConfigError) as err:
            build_backbone("resnet18", weights=str(path))
        text = str(err.value)
        assert str(path) in text and "\n" not in text and "weights_only" not in text
        assert path is wrong or "state dict" in text or "state_dict()" in text
        if path in (garbage, text_file):
            assert "not a torch file of tensors" in text


def test_efficientnet_lite0_backbone_uses_the_offline_weights():
    from oodml.features.efficientnet_lite import EfficientNetLite0
    from oodml.features.extractors import EXTRACTORS, load_strict

    model = build_model("efficientnet-lite0", dim=8, weights="imagenet")
    ref = load_strict(EfficientNetLite0(), EXTRACTORS.get("efficientnet-lite0").locate_weights())
    x = torch.randn(1, 3, 96, 96)
    model.eval()
    ref.eval()
    torch.testing.assert_close(model.backbone(x), ref(x))


# --- loop --------------------------------------------------------------------------------


def synthetic_inputs(seed: int = 0) -> TensorInputs:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(6), 8)
    feats = rng.normal(size=(6, 12))[labels] + rng.normal(size=(48, 12))
    return TensorInputs(feats.astype(np.float32), labels)


class KilledAt(TensorInputs):
    """Inputs whose epoch ``kill_at`` dies mid-way, like a killed process."""

    def __init__(self, base: TensorInputs, kill_at: int) -> None:
        super().__init__(base.features.numpy(), base.labels)
        self.kill_at = kill_at

    def train_batches(self, sampler, epoch, device):
        for i, item in enumerate(super().train_batches(sampler, epoch, device)):
            if epoch == self.kill_at and i == 1:
                raise KeyboardInterrupt
            yield item


def train_once(
    seed: int, epochs: int, checkpoint: Path | None = None, kill_at: int | None = None
) -> tuple[nn.Module, np.ndarray]:
    seed_everything(seed)
    inputs = synthetic_inputs()
    cfg = TrainConfig(epochs=epochs, batch_size=16, m=4, schedule="cosine", lr=1e-2)
    model = build_model(None, in_dim=12, dim=8)
    loss_fn = build_loss("proxyanchor", num_classes=6, embedding_size=8)
    miner = build_miner("maximum-loss", "output_size=50")
    sampler = build_sampler("m-per-class", inputs.labels, 16, seed, 4)
    res = train(
        model,
        loss_fn,
        miner,
        inputs if kill_at is None else KilledAt(inputs, kill_at),
        sampler,
        cfg,
        device=torch.device("cpu"),
        checkpoint=checkpoint,
        tag="t",
    )
    assert len(res.epoch_losses) == epochs
    return model, embed(model, inputs, device=torch.device("cpu"))


def test_same_seed_gives_identical_embeddings_and_other_seed_differs():
    _, a = train_once(0, 3)
    _, b = train_once(0, 3)
    _, c = train_once(1, 3)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_training_lowers_the_loss():
    seed_everything(0)
    inputs = synthetic_inputs()
    model = build_model(None, in_dim=12, dim=8)
    loss_fn = build_loss("multisimilarity", num_classes=6, embedding_size=8)
    res = train(
        model,
        loss_fn,
        build_miner("multisimilarity"),
        inputs,
        build_sampler("m-per-class", inputs.labels, 16, 0, 4),
        TrainConfig(epochs=15, batch_size=16, lr=1e-2),
        device=torch.device("cpu"),
    )
    assert res.epoch_losses[-1] < 0.7 * res.epoch_losses[0]


def test_resume_from_checkpoint_equals_uninterrupted_training(tmp_path):
    ckpt = tmp_path / "run.pt"
    _, straight = train_once(0, 4)
    with pytest.raises(KeyboardInterrupt):
        train_once(0, 4, checkpoint=ckpt, kill_at=2)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    _, resumed = train_once(0, 4, checkpoint=ckpt)
    assert np.array_equal(straight, resumed)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 4


def test_train_config_and_device_errors():
    with pytest.raises(ConfigError, match="optimizer='rmsprop' is not one of: adam, adamw, sgd"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="schedule='linear' is not one of"):
        TrainConfig(schedule="linear")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"
    for device in ("meta", "mps", "xpu"):
        with pytest.raises(ConfigError, match=f"unsupported device '{device}'"):
            resolve_device(device)


def test_optimisers_update_loss_parameters_too():
    for opt in ("adam", "adamw", "sgd"):
        seed_everything(0)
        inputs = synthetic_inputs()
        model = build_model(None, in_dim=12, dim=8)
        loss_fn = build_loss("proxyanchor", num_classes=6, embedding_size=8)
        before = [p.detach().clone() for p in loss_fn.parameters()]
        train(
            model,
            loss_fn,
            None,
            inputs,
            build_sampler("random", inputs.labels, 16, 0),
            TrainConfig(epochs=1, batch_size=16, optimizer=opt, schedule="step", step_size=1),
            device=torch.device("cpu"),
        )
        after = list(loss_fn.parameters())
        assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True)), opt


def test_loss_table_matches_constructor_signatures():
    for name in LOSSES.names():
        info = LOSSES.get(name)
        params = inspect.signature(info.factory).parameters
        for arg in info.provided:
            assert arg in params or any(p.kind == p.VAR_KEYWORD for p in params.values()), (
                name,
                arg,
            )
