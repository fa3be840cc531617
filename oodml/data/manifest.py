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
import re
import stat
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from oodml.errors import DataError, short

MAX_IMAGE_BYTES = 256 * 2**20
"""Largest image file (or zip member, uncompressed) read; larger ones are a DataError."""

READ_ERRORS = (OSError, KeyError, zipfile.BadZipFile, RuntimeError, NotImplementedError,
               EOFError, zlib.error)
"""What reading an image's bytes from a folder or zip can raise (zipfile raises RuntimeError
for an encrypted member and NotImplementedError for an unknown compression method)."""

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
            self._zf = open_zip(self.zip_path)
            self._pid = os.getpid()
        return self._zf

    def read(self, relpath: str) -> bytes:
        """The member's bytes; its declared size, encryption and compression method are checked
        before anything is decompressed (and zipfile stops at the declared size and checks the
        CRC). A member that cannot be read is an OSError naming it."""
        info = self._zip().getinfo(self.prefix + relpath)
        why = member_problem(info)
        if why:
            raise OSError(f"zip member {info.filename} {why}")
        try:
            return self._zip().read(info)
        except (RuntimeError, NotImplementedError, EOFError, zlib.error, ValueError) as exc:
            raise OSError(f"zip member {info.filename} cannot be read ({exc})") from None

    def problems(self, relpaths: tuple[str, ...]) -> list[str]:
        """'member: why' for every member of ``relpaths`` that no reader can decompress
        (encrypted, unsupported compression), from the central directory alone; an oversized
        member is refused when it is read (``read``)."""
        zf, prefix = self._zip(), self.prefix
        out = []
        for rel in relpaths:
            why = member_problem(zf.getinfo(prefix + rel), size=False)
            if why:
                out.append(f"{rel}: {why}")
        return out

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


def _supported_methods() -> frozenset[int]:
    methods = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
    for method, module in ((zipfile.ZIP_BZIP2, "bz2"), (zipfile.ZIP_LZMA, "lzma")):
        try:
            __import__(module)
        except ImportError:
            continue
        methods.add(method)
    return frozenset(methods)


SUPPORTED_ZIP_METHODS = _supported_methods()
"""Compression methods this Python's zipfile can decompress (stored, deflate, and bzip2 and
LZMA when their modules exist); others (deflate64, implode, zstd, ...) are refused by name."""


def member_problem(info: zipfile.ZipInfo, *, size: bool = True) -> str | None:
    """Why a zip member cannot be read as an image, from its central-directory entry, or None:
    encrypted (flag bit 0), a compression method zipfile lacks, or (with ``size``) a declared
    size above MAX_IMAGE_BYTES."""
    if info.flag_bits & 0x1:
        return "is encrypted (password-protected); re-create the archive without a password"
    if info.compress_type not in SUPPORTED_ZIP_METHODS:
        return (f"uses compression method {info.compress_type}, which Python's zipfile cannot "
                "decompress; re-create the archive with deflate")
    if size and info.file_size > MAX_IMAGE_BYTES:
        return f"declares {info.file_size} bytes (limit {MAX_IMAGE_BYTES})"
    return None


def open_zip(path: Path | str) -> zipfile.ZipFile:
    """Open a zip archive with member names decoded the way folder names are.

    zipfile decodes a name without the UTF-8 flag (bit 11) as cp437, turning the UTF-8 bytes
    most tools write into mojibake ("charactΘr04"). Here such a name is decoded from its raw
    bytes as UTF-8 instead, with undecodable bytes kept as surrogates exactly like
    ``os.fsdecode`` does for a folder entry; the loaders then refuse those the same way
    (``check_utf8``), so a zip and a folder with the same names agree."""
    zf = zipfile.ZipFile(path)
    for info in zf.infolist():
        if info.flag_bits & 0x800 or info.filename.isascii():
            continue
        try:
            raw = info.orig_filename.encode("cp437")
        except UnicodeEncodeError:
            continue
        name = raw.decode("utf-8", "surrogateescape").replace(os.sep, "/")
        if name != info.filename:
            zf.NameToInfo.pop(info.filename, None)
            info.filename = name
            zf.NameToInfo[name] = info
    return zf


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
                + ", ".join(short(c) for c in sorted(unknown)[:5])
            )
        return np.array([i for i, c in enumerate(self.labels) if c in wanted], dtype=np.int64)

    def read_bytes(self, i: int) -> bytes:
        """Raw bytes of image ``i``; a missing or unreadable file raises a DataError naming it."""
        try:
            return self.source.read(self.paths[i])
        except READ_ERRORS as exc:
            raise DataError(
                f"cannot read image {Path(self.root) / self.paths[i]}: {exc}; "
                "restore the file or pass --skip-bad to leave it out"
            ) from None

    def load_image(self, i: int, resize_to: int | None = None) -> Image.Image:
        """Decode image ``i`` as RGB; an unreadable or corrupt file, or one whose shorter side
        resized to ``resize_to`` would be too large, raises a DataError naming it."""
        return decode_image(self.read_bytes(i), self.paths[i], self.root, resize_to)


MAX_RESIZED_PIXELS = 2**25
"""Largest image (width x height) a transform's resize may produce: resizing the shorter side
of a 1 x 20000 image to 256 would make 256 x 5,120,000 pixels (6 GB as floats)."""

PLANNED_SHORT_SIDE = 256
"""Shorter side the built-in transforms resize to (extractors; training's evaluation transform
at image size 224): ``--skip-bad`` checks every image's resize against this plan."""


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to ``short_side`` keeping the aspect
    ratio, as torchvision's ``Resize(int)`` computes it (the long side is truncated)."""
    if width <= height:
        return short_side, int(short_side * height / width)
    return int(short_side * width / height), short_side


def decode_image(
    data: bytes, relpath: str, root: Path | str = "", resize_to: int | None = None
) -> Image.Image:
    """Decode as RGB; the pixel count is read from the header and checked before decoding, and
    so is the size a resize of the shorter side to ``resize_to`` would produce.

    High bit depths are scaled, never clipped: 16-bit grey (modes ``I;16*``, or ``I`` holding
    values in 0..65535) by 255/65535 (PNG's own rule for reducing a sample's depth), float
    (mode ``F``) by 255 when its values lie in [0, 1]; anything else is refused in one line."""
    where = Path(root) / relpath
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(
                    f"image {where} is {width} x {height} pixels, more than the "
                    f"{MAX_IMAGE_PIXELS} oodml decodes; downscale it or pass --skip-bad"
                )
            if resize_to is not None and min(width, height) > 0:
                w, h = resized_size(width, height, resize_to)
                if w * h > MAX_RESIZED_PIXELS:
                    raise DataError(
                        f"image {where} is {width} x {height} pixels; resizing its shorter side "
                        f"to {resize_to} would make it {w} x {h} ({w * h} pixels, more than "
                        f"{MAX_RESIZED_PIXELS}); crop it or pass --skip-bad"
                    )
            return _to_rgb(im, where)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"cannot decode image {where}: {_reason(exc)}; "
            "replace the file or pass --skip-bad to leave it out"
        ) from None


def _reason(exc: BaseException) -> str:
    """The library's reason without the in-memory buffer's repr ("<_io.BytesIO object at
    0x...>"), which names nothing the user knows; the caller names the image."""
    text = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(exc)).strip()
    text = text or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


_GREY16 = ("I;16", "I;16L", "I;16B", "I;16N")


def _to_rgb(im: Image.Image, where: Path) -> Image.Image:
    """``im`` as 8-bit RGB, high bit depths scaled (see ``decode_image``)."""
    if im.mode not in (*_GREY16, "I", "F"):
        return im.convert("RGB")
    a = np.asarray(im)
    if a.size == 0:
        return im.convert("RGB")
    if im.mode == "F":
        if not np.isfinite(a).all():
            raise DataError(f"image {where} is a float image with NaN or infinite values; "
                            "convert it to 8-bit or pass --skip-bad")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"image {where} is a float image with values in [{lo:.6g}, {hi:.6g}], not "
                "[0, 1], so its brightness scale is unknown; convert it to 8-bit or pass "
                "--skip-bad"
            )
        grey = np.rint(a.astype(np.float64) * 255.0)
    else:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 65535:
            raise DataError(
                f"image {where} holds {im.mode!r} integer values in [{lo}, {hi}], outside the "
                "16-bit range 0..65535; convert it to 8 or 16 bit or pass --skip-bad"
            )
        grey = np.rint(a.astype(np.float64) * (255.0 / 65535.0))
    return Image.fromarray(grey.astype(np.uint8)).convert("RGB")


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
