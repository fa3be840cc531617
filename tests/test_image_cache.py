"""The decode-once image route of full-backbone training (``image_cache``), channels-last and
bf16 autocast on the CPU: evaluation batches equal the PIL route's bit for bit, training crops
follow RandomResizedCrop's rule and repeat per (seed, epoch), the memory budget degrades to
decoding per batch with the same pixels, and the new option leaves old run configs as they were.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from oodml.data import load_dataset
from oodml.train.images import DecodedImages, ImageInputs, crop_box, eval_resize
from oodml.train.loop import TrainConfig, embed, train
from oodml.train.losses import build_loss
from oodml.train.samplers import build_sampler

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def manifest(omniglot_zip):
    return load_dataset("omniglot", omniglot_zip)


def _inputs(manifest, cache: bool, n: int = 24, size: int = 40, **kw) -> ImageInputs:
    idx = np.arange(0, 20 * n, 20)[:n]
    labels = np.repeat(np.arange(n // 4), 4)
    return ImageInputs(manifest, idx, labels, backbone="efficientnet-lite0", size=size,
                       cache=cache, **kw)


def test_eval_batches_equal_the_pil_route_bit_for_bit(manifest):
    pil = torch.cat(list(_inputs(manifest, False).eval_batches(10, CPU)))
    cached = torch.cat(list(_inputs(manifest, True).eval_batches(10, CPU)))
    assert pil.shape == cached.shape == (24, 3, 40, 40)
    assert torch.equal(pil, cached)


def test_crop_boxes_follow_random_resized_crop():
    gen = torch.Generator().manual_seed(3)
    inside = 0
    for h, w in [(50, 50), (40, 90), (200, 30)]:
        for _ in range(200):
            top, left, ch, cw = crop_box(h, w, gen)
            assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w
            share, aspect = ch * cw / (h * w), cw / ch
            if 0.08 * 0.9 <= share <= 1.0 and 3 / 4 * 0.9 <= aspect <= 4 / 3 * 1.1:
                inside += 1
    assert inside >= 0.95 * 600
    # the fallback (no try fits): centre crop with the aspect clamped to [3/4, 4/3]
    top, left, ch, cw = crop_box(1, 1000, torch.Generator().manual_seed(0), scale=(0.99, 1.0))
    assert (ch, cw) == (1, 1) and left == (1000 - 1) // 2


def test_training_batches_repeat_per_seed_and_epoch(manifest):
    a, b = _inputs(manifest, True), _inputs(manifest, True)
    sampler = build_sampler("m-per-class", a.labels, 12, 0, 4)
    xa = [x for x, _ in a.train_batches(sampler, 0, CPU)]
    xb = [x for x, _ in b.train_batches(sampler, 0, CPU)]
    x1 = [x for x, _ in a.train_batches(sampler, 1, CPU)]
    assert all(torch.equal(p, q) for p, q in zip(xa, xb, strict=True))
    assert not torch.equal(xa[0], x1[0])
    # normalised with the lite backbone's (127/255, 128/255): values in [-127/128, 1]
    assert xa[0].min() >= -127 / 128 - 1e-6 and xa[0].max() <= 1 + 1e-6
    assert xa[0].shape == (12, 3, 40, 40)


def test_over_budget_images_are_decoded_per_batch(manifest):
    idx = np.arange(0, 200, 20)
    full = DecodedImages(manifest, idx, eval_resize(40))
    one = int(full[0].numel())
    with pytest.warns(UserWarning, match="decoded per batch"):
        part = DecodedImages(manifest, idx, eval_resize(40), budget=3 * one)
    assert len(part.images) == 3 and len(part) == len(full) == 10
    assert all(torch.equal(full[i], part[i]) for i in range(10))


def test_image_cache_is_left_out_of_old_configs():
    assert "image_cache" not in TrainConfig().to_dict()
    assert TrainConfig(image_cache=True).to_dict()["image_cache"] is True


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.fc = torch.nn.Linear(8, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.fc(self.conv(x).mean((2, 3))), dim=1)


@pytest.mark.parametrize("amp,channels_last", [(True, False), (False, True)])
def test_cpu_amp_and_channels_last_train_and_record_timings(manifest, amp, channels_last):
    torch.manual_seed(0)
    inputs = _inputs(manifest, True, channels_last=channels_last)
    model, loss = Tiny(), build_loss("multisimilarity", num_classes=6, embedding_size=16)
    cfg = TrainConfig(epochs=2, batch_size=12, amp=amp, channels_last=channels_last,
                      image_cache=True)
    sampler = build_sampler("m-per-class", inputs.labels, 12, 0, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = train(model, loss, None, inputs, sampler, cfg, device=CPU)
    assert all(math.isfinite(v) for v in res.epoch_losses)
    assert res.images == 2 * 24 and 0 < res.data_seconds < res.seconds
    ref = embed(model, inputs, device=CPU, batch_size=8)
    got = embed(model, inputs, device=CPU, batch_size=8, amp=amp, channels_last=channels_last)
    # bf16 keeps 8 bits of mantissa: unit vectors agree to about 1e-2; fp32 channels-last to 1e-5
    assert np.abs(got - ref).max() < (3e-2 if amp else 1e-5)
    assert not amp or np.abs(got - ref).max() > 0  # bf16 really ran
