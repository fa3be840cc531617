"""On-disk feature cache: one deterministic ``.npz`` (no pickles) plus a JSON metadata file per
(dataset fingerprint, dataset content id, extractor, weights sha256, precision).

fp32 entries keep the paths they had before precisions existed (their JSON without a
``precision`` reads as fp32); other precisions get a ``-bf16``/``-fp16`` suffix and a
``precision`` field, both checked, so reduced-precision features never pass for fp32 ones.

The content id (``Manifest.content_id``) covers what the images hold, so a folder whose images
changed under the same names gets a new entry instead of the old features.

The JSON records the sha256 of the ``.npz`` bytes, so a truncated, edited or mismatched
cache entry is detected and recomputed instead of being trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from oodml.features.featureset import FeatureSet
from oodml.fileio import atomic_write_bytes, atomic_write_text

CACHE_VERSION = 2
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class CacheMiss(Exception):
    """No usable cache entry; the message says why (absent, corrupt, mismatched)."""


def default_cache_dir() -> Path:
    """``$OODML_CACHE`` if set, else ``~/.cache/oodml``."""
    env = os.environ.get("OODML_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "oodml"


def cache_paths(
    cache_dir: str | os.PathLike,
    fingerprint: str,
    extractor: str,
    weights_sha256: str,
    content_id: str = "",
    precision: str = "fp32",
) -> tuple[Path, Path]:
    """The ``.npz`` and ``.json`` paths of one cache entry."""
    stem = f"{fingerprint[:32]}-{weights_sha256[:16]}"
    if content_id:
        stem += f"-{content_id[:32]}"
    if precision != "fp32":
        stem += f"-{precision}"
    path = Path(cache_dir) / "features" / extractor / stem
    return path.with_suffix(".npz"), path.with_suffix(".json")


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` archive whose bytes depend only on the arrays (fixed zip timestamps)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def save_features(fs: FeatureSet, cache_dir: str | os.PathLike) -> Path:
    """Write ``fs`` atomically into the cache; returns the ``.npz`` path."""
    npz_path, json_path = cache_paths(
        cache_dir, fs.fingerprint, fs.extractor, fs.weights_sha256, fs.content_id, fs.precision
    )
    data = npz_bytes(
        {
            "features": fs.features.astype(np.float32, copy=False),
            "labels": np.asarray(fs.labels, dtype=str),
            "paths": np.asarray(fs.paths, dtype=str),
        }
    )
    meta = {
        "cache_version": CACHE_VERSION,
        "extractor": fs.extractor,
        "weights_sha256": fs.weights_sha256,
        "fingerprint": fs.fingerprint,
        "content_id": fs.content_id,
        "n_images": len(fs),
        "dim": fs.dim,
        "npz_sha256": hashlib.sha256(data).hexdigest(),
        "precision": fs.precision,
    }
    atomic_write_bytes(npz_path, data)
    atomic_write_text(json_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return npz_path


def load_features(
    cache_dir: str | os.PathLike,
    fingerprint: str,
    extractor: str,
    weights_sha256: str,
    labels: tuple[str, ...],
    paths: tuple[str, ...],
    content_id: str = "",
    precision: str = "fp32",
) -> FeatureSet:
    """Read a cache entry and check it against the expected inputs; raise CacheMiss if unusable."""
    npz_path, json_path = cache_paths(cache_dir, fingerprint, extractor, weights_sha256,
                                      content_id, precision)
    if not npz_path.is_file() or not json_path.is_file():
        raise CacheMiss(f"no cache entry {npz_path}")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        data = npz_path.read_bytes()
    except (OSError, ValueError) as exc:
        raise CacheMiss(f"unreadable cache entry {json_path}: {exc}") from None
    expected = {
        "cache_version": CACHE_VERSION,
        "extractor": extractor,
        "weights_sha256": weights_sha256,
        "fingerprint": fingerprint,
        "content_id": content_id,
        "n_images": len(paths),
        "npz_sha256": hashlib.sha256(data).hexdigest(),
    }
    wrong = [k for k, v in expected.items() if not isinstance(meta, dict) or meta.get(k) != v]
    if isinstance(meta, dict) and meta.get("precision", "fp32") != precision:
        wrong.append("precision")
    if wrong:
        raise CacheMiss(f"cache entry {npz_path} does not match ({', '.join(wrong)})")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            features = npz["features"]
            cached_labels = tuple(str(x) for x in npz["labels"])
            cached_paths = tuple(str(x) for x in npz["paths"])
    except Exception as exc:
        raise CacheMiss(f"corrupt cache entry {npz_path}: {exc}") from None
    if cached_labels != tuple(labels) or cached_paths != tuple(paths):
        raise CacheMiss(f"cache entry {npz_path} lists other images than the dataset")
    if features.dtype != np.float32 or features.shape != (len(paths), meta.get("dim")):
        raise CacheMiss(f"cache entry {npz_path} has features of shape {features.shape}")
    return FeatureSet(
        features=features,
        labels=tuple(labels),
        paths=tuple(paths),
        extractor=extractor,
        weights_sha256=weights_sha256,
        fingerprint=fingerprint,
        content_id=content_id,
        precision=precision,
    )
