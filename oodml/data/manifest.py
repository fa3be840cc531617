"""A dataset as a manifest: image paths, class per image, optional superclass, and two identities.

``fingerprint`` (names only) identifies which images a split file refers to, independent of
whether the images sit in a folder or inside a zip archive; split files record it.
``content_id`` also covers what the images hold; the feature cache is keyed by it, so features
are never served for images that changed since they were computed (see ``content_id_of``).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from oodml.errors import DataError

MAX_IMAGE_BYTES = 256 * 2**20
"""Largest image file (or zip member, uncompressed) read; larger ones are a DataError."""

MAX_IMAGE_PIXELS = 2 * 10**8
"""Largest image (width x height) decoded; the header is checked before any pixel is decoded."""


class DirSource:
    """Images stored as files under a directory; relative paths use '/'."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def read(self, relpath: str) -> bytes:
        """The file's bytes. Only a regular file is read: the file is opened non-blocking and
        checked with fstat before reading, so a FIFO or device named like an image never blocks
        and an oversized file is refused before it is read."""
        path = self.root / relpath
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(f"{path} is not a regular file")
            if st.st_size > MAX_IMAGE_BYTES:
                raise OSError(f"{path} has {st.st_size} bytes (limit {MAX_IMAGE_BYTES})")
            with os.fdopen(fd, "rb", closefd=True) as f:
                fd = -1
                return f.read(MAX_IMAGE_BYTES + 1)
        finally:
            if fd >= 0:
                os.close(fd)

    def exists(self, relpath: str) -> bool:
        return (self.root / relpath).is_file()

    def identity(self, relpath: str) -> str:
        """(size, mtime_ns, ctime_ns, inode, device) of the file: any write through the kernel
        changes ctime, which tools (touch, cp -p, rsync -t, utime) cannot set back."""
        st = os.stat(self.root / relpath)
        return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"

    def identities(self, relpaths: tuple[str, ...]) -> list[str]:
        """``identity`` of many files (one ``os.stat`` each, no path objects)."""
        base = os.fspath(self.root)
        out = []
        for rel in relpaths:
            st = os.stat(os.path.join(base, rel))
            out.append(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}")
        return out

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
        """The member's bytes; its declared size is checked before anything is decompressed
        (and zipfile stops at the declared size and checks the CRC)."""
        info = self._zip().getinfo(self.prefix + relpath)
        if info.file_size > MAX_IMAGE_BYTES:
            raise OSError(
                f"zip member {info.filename} declares {info.file_size} bytes "
                f"(limit {MAX_IMAGE_BYTES})"
            )
        return self._zip().read(info)

    def identity(self, relpath: str) -> str:
        """(uncompressed size, CRC-32) of the member, from the central directory (no read)."""
        info = self._zip().getinfo(self.prefix + relpath)
        return f"{info.file_size}:{info.CRC:08x}"

    def identities(self, relpaths: tuple[str, ...]) -> list[str]:
        """``identity`` of many members (one central-directory lookup each)."""
        zf, prefix = self._zip(), self.prefix
        infos = [zf.getinfo(prefix + rel) for rel in relpaths]
        return [f"{i.file_size}:{i.CRC:08x}" for i in infos]

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
        h.update(f"{cls}\t{path}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def content_id_of(
    source: DirSource | ZipSource, labels: tuple[str, ...], paths: tuple[str, ...]
) -> str:
    """sha256 over the sorted 'class<TAB>path<TAB>identity' lines, where identity is what the
    source says about the file's content without reading it.

    Guarantee. Zip: the identity is the member's CRC-32 and size; zipfile checks every member it
    reads against that CRC, so the features come from bytes with this CRC; an accidental change
    goes unnoticed with probability 2^-32 per member (CRC-32 is no defence against a deliberate
    collision). Folders: size, mtime, ctime, inode and device; a file rewritten, replaced or
    copied in gets a new ctime or inode, and ctime cannot be set back from user space, so a
    changed pixel changes the id, except for a same-size rewrite within one tick of the
    filesystem's timestamp clock (a few ms on ext4/xfs/btrfs, up to 2 s on FAT) after the
    features were read; ``get_features`` re-reads the id after extraction and caches nothing if
    it moved. A copied or re-extracted folder gets a new id (recomputed once, never wrong).
    Use ``content_sha256`` for a portable, cryptographic identity.
    """
    try:
        idents = source.identities(paths)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read the images of {source}: {exc}") from None
    h = hashlib.sha256()
    for cls, path, ident in sorted(zip(labels, paths, idents, strict=True)):
        h.update(f"{cls}\t{path}\t{ident}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def content_sha256(manifest: Manifest) -> str:
    """sha256 over the sorted 'class<TAB>path<TAB>sha256(bytes)' lines: reads every image.

    Portable across copies and machines and cryptographically strong, at the price of one read
    of the whole dataset (measured in ``benchmarks/bench_content_id.py``)."""
    rows = []
    for i in range(len(manifest)):
        digest = hashlib.sha256(manifest.read_bytes(i)).hexdigest()
        rows.append((manifest.labels[i], manifest.paths[i], digest))
    h = hashlib.sha256()
    for cls, path, digest in sorted(rows):
        h.update(f"{cls}\t{path}\t{digest}\n".encode("utf-8", "surrogateescape"))
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
    skipped_links: tuple[str, ...] = ()

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
    def content_id(self) -> str:
        """Names and content identity (see ``content_id_of``); keys the feature cache."""
        return content_id_of(self.source, self.labels, self.paths)

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
    """Decode as RGB; the pixel count is read from the header and checked before decoding."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(
                    f"image {Path(root) / relpath} is {width} x {height} pixels, more than the "
                    f"{MAX_IMAGE_PIXELS} oodml decodes; downscale it or pass --skip-bad"
                )
            return im.convert("RGB")
    except DataError:
        raise
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
