"""`oodml weights`: every extractor/backbone's weights source, presence and sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from oodml.errors import ConfigError
from oodml.features import fid_inception as tf_fid
from oodml.features.extractors import INCEPTION_FILE, RESNET50_FILE
from oodml.features.weights import list_weights


@pytest.fixture()
def ckpt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "th"
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return folder


def by_key(entries):
    return {(e.name, e.source.split()[0]): e for e in entries}


def test_lists_sources_presence_and_hashes(ckpt, tmp_path):
    (ckpt / RESNET50_FILE).write_bytes(b"resnet")
    (ckpt / "resnet18-f37072fd.pth").write_bytes(b"r18")
    entries = list_weights(["vgg11"], cache_dir=tmp_path / "cache")
    names = [e.name for e in entries]
    assert names[:5] == ["inception", "inception", "inception", "resnet50", "efficientnet-lite0"]
    resnet = next(e for e in entries if e.name == "resnet50")
    assert resnet.present and resnet.sha256 == hashlib.sha256(b"resnet").hexdigest()
    assert "download.pytorch.org" in resnet.source and resnet.path == ckpt / RESNET50_FILE
    own, helper, converted = entries[:3]
    assert not own.present and own.path == ckpt / INCEPTION_FILE and not own.default
    assert helper.present and helper.default and helper.sha256 == tf_fid.FID_HELPER_SHA256
    assert not converted.present
    r18 = next(e for e in entries if e.name == "resnet18")
    assert r18.present and r18.default and r18.sha256 == hashlib.sha256(b"r18").hexdigest()
    vgg = next(e for e in entries if e.name == "vgg11")
    assert not vgg.present and vgg.sha256 is None and vgg.source.startswith("download https")
    lite0 = next(e for e in entries if e.name == "efficientnet-lite0")
    assert lite0.present and len(lite0.sha256) == 64


def test_pytorch_fid_file_is_the_default_without_the_package(ckpt, tmp_path, monkeypatch):
    (ckpt / INCEPTION_FILE).write_bytes(b"fid")
    own, helper, _ = list_weights(cache_dir=tmp_path, hash_files=False)[:3]
    assert own.present and not own.default and helper.default and own.sha256 is None
    monkeypatch.setattr(tf_fid, "fid_helper_file", lambda: None)
    own, helper, _ = list_weights(cache_dir=tmp_path, hash_files=False)[:3]
    assert own.default and not helper.present and not helper.default


def test_unknown_backbone_is_one_line(ckpt):
    with pytest.raises(ConfigError, match="resnet-9000"):
        list_weights(["resnet-9000"])
