"""The opt-in reduced-precision extraction path (``precision="bf16"``): its features agree with
fp32 within a stated tolerance, live under their own cache key, and are recorded in split
files so they never pass for fp32 ones."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_features import omniglot_manifest

from oodml.errors import ConfigError
from oodml.features import cache_paths, get_features
from oodml.features.extract import feature_precision
from oodml.features.options import FeatureOptions
from oodml.splits.splitfile import load_splitfile, save_splitfile, verify

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "splits" / "omniglot_small1_efficientnet-lite0_class-means_greedy.json"
BF16_ROW_TOLERANCE = 0.15
"""Largest ||f_bf16 - f_fp32|| / ||f_fp32|| allowed per image (efficientnet-lite0). bf16 keeps
8 mantissa bits (relative rounding 2^-9 = 0.2% a value) and the error grows along 16 blocks;
on the full Omniglot subset the largest per-image difference is stated in
reports/fast_extraction/README.md."""


def row_rel_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


def test_bf16_features_agree_with_fp32_and_are_cached_apart(omniglot_zip, tmp_path):
    manifest = omniglot_manifest(omniglot_zip, n_classes=2, per_class=1, stride=50)
    fp32 = get_features(manifest, "efficientnet-lite0", cache_dir=tmp_path, num_workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "no native bf16" on older CPUs
        bf16 = get_features(manifest, "efficientnet-lite0", cache_dir=tmp_path, num_workers=0,
                            precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    diff = row_rel_diff(bf16.features, fp32.features)
    assert diff.max() < BF16_ROW_TOLERANCE
    assert diff.min() > 0  # autocast really ran in bf16

    keys = [cache_paths(tmp_path, manifest.fingerprint, "efficientnet-lite0", fs.weights_sha256,
                        manifest.content_id, fs.precision) for fs in (fp32, bf16)]
    assert keys[0] != keys[1] and all(p.is_file() for k in keys for p in k)
    assert keys[0] == cache_paths(tmp_path, manifest.fingerprint, "efficientnet-lite0",
                                  fp32.weights_sha256, manifest.content_id)  # fp32: as before
    assert json.loads(keys[1][1].read_text())["precision"] == "bf16"

    again = get_features(manifest, "efficientnet-lite0", cache_dir=tmp_path,
                         precision="bf16")  # a cache hit: same bf16 features
    assert np.array_equal(again.features, bf16.features) and again.precision == "bf16"
    assert np.array_equal(
        get_features(manifest, "efficientnet-lite0", cache_dir=tmp_path).features,
        fp32.features)

    # an fp32 entry whose metadata claims bf16 (or the reverse) is never served
    meta = json.loads(keys[0][1].read_text())
    keys[0][1].write_text(json.dumps({**meta, "precision": "bf16"}))
    with pytest.warns(RuntimeWarning, match="precision"):
        fs = get_features(manifest, "efficientnet-lite0", cache_dir=tmp_path, num_workers=0)
    assert np.array_equal(fs.features, fp32.features)


def test_precision_options_are_checked():
    with pytest.raises(ConfigError, match="precision='fp16' is not one of fp32, bf16"):
        FeatureOptions(precision="fp16")
    with pytest.raises(ConfigError, match="exclude each other"):
        FeatureOptions(amp=True, precision="bf16")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert feature_precision("fp32", False, cpu) == "fp32"
    assert feature_precision("fp32", True, cpu) == "fp32"  # amp changes nothing on a CPU
    assert feature_precision("fp32", True, cuda) == "fp16"  # and is keyed apart on CUDA
    assert feature_precision("bf16", False, cpu) == "bf16"


def test_split_files_record_a_non_fp32_precision(omniglot_features, tmp_path):
    manifest, fs = omniglot_features
    sf = load_splitfile(PUBLISHED)
    assert sf.precision == "fp32"
    same = tmp_path / "same.json"
    save_splitfile(sf, same)
    assert same.read_bytes() == PUBLISHED.read_bytes()  # fp32 files keep their bytes

    bf = tmp_path / "bf16.json"
    save_splitfile(replace(sf, precision="bf16"), bf)
    assert json.loads(bf.read_text())["extractor"]["precision"] == "bf16"
    loaded = load_splitfile(bf)
    assert loaded.precision == "bf16"
    problems = verify(loaded, manifest, fs)
    assert len(problems) == 1 and "computed in fp32, the split file's in bf16" in problems[0]
    assert verify(sf, manifest, fs) == []
