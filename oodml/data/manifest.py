"""A dataset as a manifest: image paths, class per image, optional superclass, and a fingerprint.

The fingerprint identifies exactly which images a split file or a feature cache refers to,
independent of whether the images sit in a folder or inside a zip archive.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from oodml.errors import DataError


class DirSource:
    """Images stored as files under a directory; relative paths use '/'."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def read(self, relpath: str) -> bytes:
        return (self.root / relpath).read_bytes()

    def exists(self, relpath: str) -> bool:
        return (self.root / relpath).is_file()

    def __repr__(self) -> str:
        return f"DirSource({str(self.root)!r})"


class ZipSource:
    """Images stored inside a zip archive, under an optional member prefix.

    The ZipFile handle is opened lazily per process so the source can be sent to
    DataLoader workers.
    """

    def __init__(self, zip_path: Path, prefix: str = "") -> None:
        self.zip_path = Path(zip_path)
        self.prefix = prefix
        self._zf: zipfile.ZipFile | None = None
        self._pid = os.getpid()

    def _zip(self) -> zipfile.ZipFile:
        # A handle inherited through fork shares its file offset with the parent: reopen.
        if self._zf is None or self._pid != os.getpid():
            self._zf = zipfile.ZipFile(self.zip_path)
            self._pid = os.getpid()
        return self._zf

    def read(self, relpath: str) -> bytes:
        return self._zip().read(self.prefix + relpath)

    def exists(self, relpath: str) -> bool:
        try:
            self._zip().getinfo(self.prefix + relpath)
        except KeyError:
            return False
        return True

    def __getstate__(self) -> dict:
        return {"zip_path": self.zip_path, "prefix": self.prefix, "_zf": None, "_pid": None}

    def __repr__(self) -> str:
        return f"ZipSource({str(self.zip_path)!r}, prefix={self.prefix!r})"


def fingerprint_of(labels: list[str] | tuple[str, ...], paths: list[str] | tuple[str, ...]) -> str:
    """sha256 over the sorted (class, relative path) pairs, one 'class<TAB>path' line each."""
    h = hashlib.sha256()
    for cls, path in sorted(zip(labels, paths, strict=True)):
        h.update(f"{cls}\t{path}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """The images of one dataset: ``paths[i]`` (relative to ``root``) has class ``labels[i]``."""

    name: str
    root: Path
    source: DirSource | ZipSource = field(repr=False, compare=False)
    paths: tuple[str, ...]
    labels: tuple[str, ...]
    superclasses: tuple[str, ...] | None = None
    default_train: tuple[str, ...] = ()
    default_test: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.labels):
            raise ValueError("paths and labels differ in length")
        if self.superclasses is not None and len(self.superclasses) != len(self.paths):
            raise ValueError("superclasses and paths differ in length")

    def __len__(self) -> int:
        return len(self.paths)

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_of(self.labels, self.paths)

    @cached_property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.labels)))

    @cached_property
    def class_counts(self) -> dict[str, int]:
        counts = Counter(self.labels)
        return {c: counts[c] for c in self.classes}

    @cached_property
    def label_index(self) -> np.ndarray:
        """Integer class id per image (index into ``classes``)."""
        pos = {c: i for i, c in enumerate(self.classes)}
        return np.fromiter((pos[c] for c in self.labels), dtype=np.int64, count=len(self.labels))

    def indices_of(self, classes: list[str] | tuple[str, ...]) -> np.ndarray:
        """Image indices of the given classes, in manifest order."""
        wanted = set(classes)
        unknown = wanted.difference(self.class_counts)
        if unknown:
            raise DataError(
                f"{len(unknown)} class(es) not in dataset {self.name!r} at {self.root}: "
                f"{sorted(unknown)[:5]}"
            )
        return np.array([i for i, c in enumerate(self.labels) if c in wanted], dtype=np.int64)

    def read_bytes(self, i: int) -> bytes:
        """Raw bytes of image ``i``; a missing or unreadable file raises a DataError naming it."""
        try:
            return self.source.read(self.paths[i])
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise DataError(
                f"cannot read image {Path(self.root) / self.paths[i]}: {exc}; "
                "restore the file or pass --skip-bad to leave it out"
            ) from None

    def load_image(self, i: int) -> Image.Image:
        """Decode image ``i`` as RGB; an unreadable or corrupt file raises a DataError naming it."""
        return decode_image(self.read_bytes(i), self.paths[i], self.root)


def decode_image(data: bytes, relpath: str, root: Path | str = "") -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except Exception as exc:
        raise DataError(
            f"cannot decode image {Path(root) / relpath}: {exc}; "
            "replace the file or pass --skip-bad to leave it out"
        ) from None


def path_problem(path: Any) -> str | None:
    """Why ``path`` is not a safe '/'-separated path inside the dataset root, or None."""
    if not isinstance(path, str) or not path:
        return "is not a non-empty string"
    if "\\" in path or "\x00" in path:
        return "contains a backslash or NUL"
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return "is absolute"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "has an empty, '.' or '..' component (it would escape the dataset root)"
    return None
