"""Datasets as manifests: a registry of loaders, one per layout.

Loaders list image files and check the layout; they do not decode images, so a corrupt file
raises a DataError only when it is decoded (``Manifest.load_image``). Pass ``skip_bad=True`` to
decode every image at load time and leave the unreadable ones out (listed in ``skipped``).
"""

from __future__ import annotations

import os
from pathlib import Path

from oodml.data import folders, omniglot, sop  # noqa: F401  (they register their loaders)
from oodml.data.base import DATASETS, IMAGE_EXTENSIONS, Loader, verify_images
from oodml.data.hierarchy import Hierarchy, hierarchy_of, read_hierarchy
from oodml.data.manifest import DirSource, Manifest, ZipSource, fingerprint_of

__all__ = [
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "DirSource",
    "Hierarchy",
    "Loader",
    "Manifest",
    "ZipSource",
    "fingerprint_of",
    "hierarchy_of",
    "list_datasets",
    "load_dataset",
    "read_hierarchy",
    "verify_images",
]


def list_datasets() -> list[str]:
    """Names accepted by ``load_dataset``, sorted."""
    return DATASETS.names()


def load_dataset(name: str, root: str | os.PathLike, skip_bad: bool = False) -> Manifest:
    """Load dataset ``name`` from ``root``; unknown names raise ConfigError, bad data DataError."""
    return DATASETS.get(name)(Path(root), skip_bad)
