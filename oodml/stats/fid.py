"""What ``oodml fid`` computes: the Fréchet distance between two image folders or two class
sets of a dataset, in ``samples`` mode (Gaussians over all images, the usual FID) or
``class-means`` mode (Gaussians over class-mean features, the ooDML study's shift).

* :func:`fid_folders` - two folders; with ``class-means`` their subfolders are the classes.
* :func:`fid_classes` - two lists of class names of one dataset.

Both return a :class:`FidResult`; features come from :class:`FeatureOptions` (cached).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from oodml.config import check_choice
from oodml.data import load_dataset
from oodml.data.base import is_image, list_dir, require_dir, verify_images
from oodml.data.manifest import DirSource, Manifest
from oodml.errors import ConfigError
from oodml.features.options import FeatureOptions
from oodml.fileio import read_text
from oodml.progress import NO_PROGRESS, Progress
from oodml.stats.class_stats import ClassStats
from oodml.stats.modes import MODES, distance_between, distance_mode, distance_within


@dataclass(frozen=True)
class FidResult:
    """A Fréchet distance and what it was measured between."""

    value: float
    mode: str
    extractor: str
    a: str
    b: str
    n_a: int
    n_b: int
    unit: str
    skipped: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return (f"{self.mode} FID ({self.extractor}) {self.a} [{self.n_a} {self.unit}] vs "
                f"{self.b} [{self.n_b} {self.unit}]")


def read_class_list(path: str | os.PathLike) -> list[str]:
    """Class names from a file, one per line (blank and '#' lines skipped)."""
    text = read_text(path, "class list")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def class_list(inline: str | None, file: str | os.PathLike | None, option: str) -> list[str]:
    """Class names from a comma list and/or a file; ``option`` names the side in errors."""
    names = [c.strip() for c in (inline or "").split(",") if c.strip()]
    if file is not None:
        names += read_class_list(file)
    if not names:
        raise ConfigError(f"no classes given for {option}; pass {option} CLS,CLS or {option}-file")
    if len(set(names)) != len(names):
        raise ConfigError(f"{option} lists a class twice; give each class once")
    return names


def folder_manifest(folder: str | os.PathLike, skip_bad: bool = False) -> Manifest:
    """All images under ``folder`` (recursively) as one pseudo-class named by its absolute path,
    so two folders with the same file names never share a feature-cache entry. With
    ``skip_bad`` every image is decoded first and the unreadable ones are left out (listed in
    ``Manifest.skipped``)."""
    root = require_dir(Path(folder), "a folder of images")
    paths = tuple(p for p in list_dir(root)[0] if is_image(p))
    manifest = Manifest(
        name="folder",
        root=root,
        source=DirSource(root),
        paths=paths,
        labels=(root.as_posix(),) * len(paths),
    )
    if skip_bad and paths:
        bad = set(verify_images(manifest))
        if bad:
            kept = tuple(p for p in paths if p not in bad)
            manifest = replace(manifest, paths=kept, labels=(root.as_posix(),) * len(kept),
                               skipped=tuple(sorted(bad)))
    if len(manifest.paths) < 2:
        usable = "readable image(s)" if skip_bad else "image(s)"
        raise ConfigError(
            f"{root} holds {len(manifest.paths)} {usable}; a Fréchet distance needs >= 2"
        )
    return manifest


def class_folders(folder: str | os.PathLike, skip_bad: bool = False) -> Manifest:
    """``folder/<class>/<image>`` as a dataset whose class names carry the folder's absolute
    path, so two folders with the same class names never share a feature-cache entry."""
    manifest = load_dataset("imagefolder", folder, skip_bad=skip_bad)
    root = Path(manifest.root).resolve().as_posix()
    return replace(manifest, labels=tuple(f"{root}::{c}" for c in manifest.labels))


def fid_folders(
    folders: Sequence[str | os.PathLike],
    *,
    mode: str = "samples",
    eps: float | None = None,
    features: FeatureOptions = FeatureOptions(),
    skip_bad: bool = False,
    progress: Progress = NO_PROGRESS,
) -> FidResult:
    """Fréchet distance between two image folders. Features are cached only when
    ``features.cache_dir`` is given (a folder of loose images is rarely seen twice)."""
    check_choice("mode", mode, MODES)
    distance_mode(mode).eps(eps)  # a bad eps fails before any feature extraction
    if len(folders) != 2:
        raise ConfigError(f"give exactly two image folders (got {len(folders)}) or a dataset")
    with tempfile.TemporaryDirectory(prefix="oodml-fid-") as tmp:
        where = features.cache_dir if features.cache_dir is not None else tmp
        if mode == "samples":
            manifests = [folder_manifest(f, skip_bad) for f in folders]
        else:
            manifests = [class_folders(f, skip_bad) for f in folders]
        feats = [features.get(m, progress, cache_dir=where) for m in manifests]
    a, b = (ClassStats.from_features(f.features, f.labels) for f in feats)
    if mode == "samples":
        n1, n2 = len(feats[0].features), len(feats[1].features)
    else:
        n1, n2 = len(a.classes), len(b.classes)
        if min(n1, n2) < 2:
            raise ConfigError(
                f"class-means needs at least 2 class subfolders per folder, got {n1} and {n2}"
            )
    value = distance_between(a, b, mode, eps)
    unit = "images" if mode == "samples" else "classes"
    skipped = tuple(f"{m.root}/{p}" for m in manifests for p in m.skipped)
    return FidResult(float(value), mode, feats[0].extractor, str(folders[0]), str(folders[1]),
                     n1, n2, unit, skipped)


def fid_classes(
    manifest: Manifest,
    side_a: Sequence[str],
    side_b: Sequence[str],
    *,
    mode: str = "samples",
    eps: float | None = None,
    features: FeatureOptions = FeatureOptions(),
    progress: Progress = NO_PROGRESS,
) -> FidResult:
    """Fréchet distance between two class sets of a dataset (features from the cache)."""
    check_choice("mode", mode, MODES)
    distance_mode(mode).eps(eps)  # a bad eps fails before any feature extraction
    unknown = sorted(set(list(side_a) + list(side_b)).difference(manifest.class_counts))
    if unknown:
        raise ConfigError(
            f"{len(unknown)} class(es) not in dataset {manifest.name!r} at {manifest.root}: "
            f"{unknown[:5]}; check the names against the dataset's class folders"
        )
    fs = features.get(manifest, progress)
    stats = ClassStats.from_features(fs.features, fs.labels)
    value = distance_within(stats, list(side_a), list(side_b), mode=mode, eps=eps)
    unit = "images" if mode == "samples" else "classes"
    counts = manifest.class_counts
    n_a = sum(counts[c] for c in side_a) if mode == "samples" else len(side_a)
    n_b = sum(counts[c] for c in side_b) if mode == "samples" else len(side_b)
    return FidResult(float(value), mode, fs.extractor, f"side A of {manifest.name}",
                     f"side B of {manifest.name}", n_a, n_b, unit)
