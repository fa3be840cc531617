"""The training loop: optimiser, LR schedule, seeding, AMP, channels-last and frozen-BN
folding, per-epoch checkpoints (atomic; loaded with ``weights_only=True``) and resume, and
batched embedding.

Inputs come from an ``Inputs`` object: ``TensorInputs`` (precomputed features, head-only) or
``oodml.train.images.ImageInputs`` (decoded, augmented images, full backbone).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from oodml.config import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_LR,
    MAX_LR_MULT,
    MAX_WORKERS,
    check_choice,
    check_float,
    check_int,
)
from oodml.errors import ConfigError, OutputError, TrainingError, first_line
from oodml.features.extractors import read_torch_file
from oodml.fileio import atomic_write_stream
from oodml.progress import NO_PROGRESS, Progress
from oodml.train.foldbn import BatchNormFold
from oodml.train.samplers import BatchSampler

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "cosine", "step")


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes optimisation (not the data or the method)."""

    epochs: int = _opt(10, f"Training epochs (at most {MAX_EPOCHS:,}).")
    batch_size: int = _opt(64, f"Training batch size (at most {MAX_BATCH:,}).")
    optimizer: str = _opt("adam", "Optimizer: adam, adamw or sgd.")
    lr: float = _opt(1e-3, f"Learning rate (at most {MAX_LR:g}).")
    weight_decay: float = _opt(0.0, "Weight decay.")
    momentum: float = _opt(0.9, "SGD momentum.")
    schedule: str = _opt("none", "LR schedule: none, cosine or step.")
    step_size: int = _opt(10, f"Epochs between LR steps (schedule step; at most {MAX_EPOCHS:,}).")
    gamma: float = _opt(0.1, "LR factor per step (schedule step).")
    loss_lr_mult: float = _opt(
        1.0, f"LR multiplier for loss parameters (proxies, classifier; at most {MAX_LR_MULT:g}).")
    sampler: str = _opt("m-per-class", "Batch sampler: m-per-class or random.")
    m: int = _opt(4, f"Images per class in a batch (m-per-class sampler; at most {MAX_BATCH:,}).")
    amp: bool = _opt(
        False, "Mixed precision: bf16 autocast on CPU, fp16 on CUDA (see the README's "
        "throughput table for where it pays).")
    channels_last: bool = _opt(False, "Channels-last memory for the network and its batches.")
    fold_bn: bool = _opt(
        False, "Fold frozen BatchNorm into the convolution before it while training (same "
        "function up to float rounding; resnet50 and efficientnet-lite0 backbones).")
    image_cache: bool = _opt(
        False, "Decode each image once into memory (uint8) and augment batches as tensors "
        "(full backbone only).")
    num_workers: int = _opt(0, f"DataLoader workers for image decoding (at most {MAX_WORKERS}).")
    eval_batch_size: int = _opt(256, f"Batch size for embedding (at most {MAX_BATCH:,}).")

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("epochs", self.epochs, 0, MAX_EPOCHS)
        check_int("batch_size", self.batch_size, 1, MAX_BATCH)
        check_int("step_size", self.step_size, 1, MAX_EPOCHS)
        check_int("m", self.m, 1, MAX_BATCH)
        check_int("num_workers", self.num_workers, 0, MAX_WORKERS)
        check_int("eval_batch_size", self.eval_batch_size, 1, MAX_BATCH)
        check_float("lr", self.lr, positive=True, hi=MAX_LR)
        check_float("weight_decay", self.weight_decay, 0.0)
        check_float("momentum", self.momentum, 0.0)
        check_float("gamma", self.gamma, positive=True)
        check_float("loss_lr_mult", self.loss_lr_mult, positive=True, hi=MAX_LR_MULT)
        for name in ("amp", "channels_last", "fold_bn", "image_cache"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be true or false")

    def to_dict(self) -> dict[str, Any]:
        """The fields, less those added later that are at their default, so the config of a
        run finished before they existed still matches (and the run is not redone)."""
        out = asdict(self)
        for name, default in LATER_FIELDS.items():
            if out[name] == default:
                del out[name]
        return out


LATER_FIELDS = {"image_cache": False, "fold_bn": False}
"""TrainConfig fields added after results were first published, with their defaults."""


def autocast(device: torch.device, enabled: bool) -> Any:
    """Mixed precision where asked: bf16 on CPU (AMX/AVX512-BF16 units), fp16 on CUDA."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


class Inputs(Protocol):
    """Model inputs addressed by position; ``labels`` are ints in [0, num_classes)."""

    labels: np.ndarray

    def train_batches(
        self, sampler: BatchSampler, epoch: int, device: torch.device
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def eval_batches(self, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]: ...


class TensorInputs:
    """Precomputed backbone features held in memory (head-only training)."""

    def __init__(self, features: np.ndarray | torch.Tensor, labels: np.ndarray) -> None:
        self.features = torch.as_tensor(np.asarray(features, dtype=np.float32))
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.features) != len(self.labels):
            raise ValueError("features and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def train_batches(
        self, sampler: BatchSampler, epoch: int, device: torch.device
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        labels = torch.as_tensor(self.labels)
        for idx in sampler.batches(epoch):
            t = torch.as_tensor(idx)
            yield self.features[t].to(device), labels[t].to(device)

    def eval_batches(self, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
        for start in range(0, len(self.features), batch_size):
            yield self.features[start : start + batch_size].to(device)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside the block: for tiny operations extra threads only add
    synchronisation (10-20x slower on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def cpu_threads_for(inputs: Inputs, device: torch.device) -> Iterator[None]:
    """Head-only work on the CPU runs single-threaded: its matrices are tiny, and one thread
    makes the floating-point results independent of the core count."""
    if not (isinstance(inputs, TensorInputs) and device.type == "cpu"):
        yield
        return
    with one_thread():
        yield


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch (all devices); ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def make_optimizer(cfg: TrainConfig, model: nn.Module, loss_fn: nn.Module) -> torch.optim.Optimizer:
    """One optimiser over the model and the loss's own parameters (proxies, classifier)."""
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr}]
    loss_params = [p for p in loss_fn.parameters() if p.requires_grad]
    if loss_params:
        groups.append({"params": loss_params, "lr": cfg.lr * cfg.loss_lr_mult})
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped once per epoch."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.epochs, 1))
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    return None


@dataclass
class TrainResult:
    """What training did; the timings cover the epochs run in this call (not resumed ones):
    ``data_seconds`` is the time spent waiting for batches, the rest is the model's step."""

    epochs_run: int
    epoch_losses: list[float]
    resumed_from: int = 0
    seconds: float = 0.0
    data_seconds: float = 0.0
    images: int = 0


def state_tag(parts: dict[str, Any]) -> str:
    """A short hash of a JSON-able description; a checkpoint is resumed only on equal tags."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file, then rename it over ``path``. torch writes through a Python
    file (:func:`oodml.fileio.atomic_write_stream`), so a full disk is a one-line OutputError
    naming the checkpoint and saying the disk is full (not torch's "enforce fail at
    inline_container.cc"); the previous checkpoint stays in place."""
    try:
        atomic_write_stream(path, lambda f: torch.save(state, f), what="checkpoint")
    except RuntimeError as exc:
        text = first_line(exc)
        why = ("the write failed (the disk may be full)" if "inline_container" in text
               or "write failed" in text else text)
        raise OutputError(
            f"cannot write checkpoint {path}: {why}; free disk space or choose another output "
            "folder (the previous checkpoint is kept)"
        ) from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    return read_torch_file(path, "checkpoint", "delete it to start over")


def diverged(cfg: TrainConfig, description: str, epoch: int, what: str) -> TrainingError:
    """The one-line error of training that left the finite numbers, naming the settings that
    set the step size (and adam only when another optimizer is in use)."""
    try_adam = "" if cfg.optimizer == "adam" else f", or try optimizer adam (not {cfg.optimizer})"
    also = [f"loss_lr_mult={cfg.loss_lr_mult:g}"] if cfg.loss_lr_mult != 1 else []
    if cfg.schedule == "step" and cfg.gamma > 1:
        also.append(f"gamma={cfg.gamma:g} (it multiplies lr every {cfg.step_size} epochs)")
    return TrainingError(
        f"{description}: training diverged at epoch {epoch + 1} ({what}); lower "
        f"{' or '.join([f'lr={cfg.lr:g}', *also])}{try_adam}, or check the loss arguments"
    )


def train(
    model: nn.Module,
    loss_fn: nn.Module,
    miner: nn.Module | None,
    inputs: Inputs,
    sampler: BatchSampler,
    cfg: TrainConfig,
    *,
    device: torch.device,
    checkpoint: Path | None = None,
    tag: str = "",
    progress: Progress = NO_PROGRESS,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` and ``loss_fn`` for ``cfg.epochs`` epochs, checkpointing each epoch to
    ``checkpoint`` and resuming from it when its ``tag`` matches. With ``cfg.fold_bn`` frozen
    BatchNorm is folded into its convolutions for the duration (``oodml.train.foldbn``)."""
    fold = BatchNormFold(model) if cfg.fold_bn else None
    try:
        with cpu_threads_for(inputs, device):
            return _train(
                model, loss_fn, miner, inputs, sampler, cfg, device=device,
                checkpoint=checkpoint, tag=tag, progress=progress, description=description,
                fold=fold,
            )
    finally:
        if fold is not None:
            fold.remove()


def _train(
    model: nn.Module,
    loss_fn: nn.Module,
    miner: nn.Module | None,
    inputs: Inputs,
    sampler: BatchSampler,
    cfg: TrainConfig,
    *,
    device: torch.device,
    checkpoint: Path | None,
    tag: str,
    progress: Progress,
    description: str,
    fold: BatchNormFold | None,
) -> TrainResult:
    model.to(device)
    loss_fn.to(device)
    cuda = device.type == "cuda"
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model, loss_fn)
    scheduler = make_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and cuda)
    start, losses = 0, []
    if checkpoint is not None and checkpoint.is_file():
        state = load_checkpoint(checkpoint)
        if state.get("tag") == tag:
            model.load_state_dict(state["model"])
            loss_fn.load_state_dict(state["loss"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler"):
                scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["torch_rng"])
            if cuda and state.get("cuda_rng"):
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            start, losses = int(state["epoch"]), list(state["epoch_losses"])
    resumed_from = start
    task = progress.task(description, total=cfg.epochs, completed=start)
    began, waited, images = time.perf_counter(), 0.0, 0
    for epoch in range(start, cfg.epochs):
        model.train()
        loss_fn.train()
        total, count = 0.0, 0
        batches = iter(inputs.train_batches(sampler, epoch, device))
        while True:
            t = time.perf_counter()
            batch = next(batches, None)
            waited += time.perf_counter() - t
            if batch is None:
                break
            x, y = batch
            images += len(y)
            if cfg.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            if fold is not None:
                fold.install(x[:2])
            with autocast(device, cfg.amp):
                emb = model(x)
            emb = emb.float()
            tuples = miner(emb, y) if miner is not None else None
            loss = loss_fn(emb, y, tuples) if tuples is not None else loss_fn(emb, y)
            if not torch.isfinite(loss):
                raise diverged(cfg, description, epoch, f"loss became {float(loss.detach())}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            try:
                scaler.step(optimizer)
            except RuntimeError as exc:
                if "overflow" not in str(exc):
                    raise
                raise diverged(cfg, description, epoch, "the update overflowed") from None
            scaler.update()
            total += float(loss.detach())
            count += 1
        if scheduler is not None:
            scheduler.step()
        losses.append(total / max(count, 1))
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                {
                    "tag": tag,
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "loss": loss_fn.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else {},
                    "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if cuda else [],
                    "epoch_losses": losses,
                },
            )
        task.advance()
        task.update(description=f"{description} loss {losses[-1]:.4f}")
    task.close()
    return TrainResult(cfg.epochs, losses, resumed_from, time.perf_counter() - began, waited,
                       images)


@torch.no_grad()
def embed(
    model: nn.Module,
    inputs: Inputs,
    *,
    device: torch.device,
    batch_size: int = 256,
    amp: bool = False,
    channels_last: bool = False,
) -> np.ndarray:
    """The model's outputs (float32 N x dim) for all inputs, in order: L2-normalised for an
    ``EmbeddingModel``, whose head normalises; raw for a bare backbone."""
    model.to(device).eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    out = []
    with cpu_threads_for(inputs, device):
        for x in inputs.eval_batches(batch_size, device):
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                out.append(model(x).float().cpu())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy()
