"""Shared pieces of the dataset loaders: the registry, file listing, validation, verification.

Loaders list files (never decode them), group them into classes, and hand the result to
``make_manifest``, which checks every class has at least two images and, only when asked
(``skip_bad=True``), decodes every image to drop the corrupt ones.
"""

from __future__ import annotations

import os
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from oodml.data.manifest import (
    PLANNED_SHORT_SIDE,
    READ_ERRORS,
    DirSource,
    Manifest,
    ZipSource,
    decode_image,
    open_zip,
)
from oodml.errors import DataError, short
from oodml.registry import Registry

Loader = Callable[[Path, bool], Manifest]

DATASETS: Registry[Loader] = Registry("dataset")

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def is_image(relpath: str) -> bool:
    """True for a file name with an accepted image extension (case-insensitive)."""
    return os.path.splitext(relpath)[1].lower() in IMAGE_EXTENSIONS


def is_hidden(relpath: str) -> bool:
    """True when any part of the path is hidden (dot file) or macOS zip metadata."""
    return any(p.startswith(".") or p == "__MACOSX" for p in relpath.split("/") if p)


def require_dir(root: Path, expected: str) -> Path:
    """The absolute root folder, or a DataError naming it and the expected layout."""
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise DataError(f"dataset root {root} does not exist; expected {expected}")
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a folder; expected {expected}")
    return root


class Listing(NamedTuple):
    """What ``scan_dir`` found: files and folders (sorted '/'-separated relative paths) and the
    directory links it did not follow, as 'link -> target (why)'."""

    files: list[str]
    dirs: list[str]
    skipped_links: list[str]


def scan_dir(base: Path) -> Listing:
    """All non-hidden regular files and folders under ``base``.

    Directory links are followed only when their target lies inside ``base`` and has not been
    visited yet (so ``up -> ..`` or two links to the same folder can neither loop nor count
    images twice); the others are listed in ``skipped_links``. A FIFO, socket or device file
    is no file here, whatever its name."""
    base = Path(base)
    real_base = os.path.realpath(base)
    files: list[str] = []
    dirs: list[str] = []
    skipped: list[str] = []
    visited = {real_base}
    stack: list[tuple[str, Path]] = [("", base)]
    links: list[tuple[str, str]] = []
    while stack or links:
        if not stack:
            rel, path = links.pop(0)
            real = os.path.realpath(path)
            inside = real == real_base or real.startswith(real_base.rstrip(os.sep) + os.sep)
            why = "leaves the dataset root" if not inside else "revisits a folder"
            if not inside or real in visited:
                skipped.append(f"{rel} -> {os.readlink(path)} ({why})")
                continue
            visited.add(real)
            dirs.append(rel)
            stack.append((rel + "/", Path(path)))
            continue
        prefix, here = stack.pop()
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError as exc:
            raise DataError(
                f"cannot list folder {here}: {exc.strerror}; check permissions"
            ) from None
        subdirs = []
        for entry in entries:
            if is_hidden(entry.name):
                continue
            rel = prefix + entry.name
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError:
                continue
            if is_file:
                files.append(rel)
            elif is_dir and entry.is_symlink():
                links.append((rel, entry.path))
            elif is_dir:
                real = os.path.realpath(entry.path)
                if real in visited:
                    skipped.append(f"{rel} (revisits a folder)")
                    continue
                visited.add(real)
                dirs.append(rel)
                subdirs.append((rel + "/", Path(entry.path)))
        stack.extend(reversed(subdirs))
    return Listing(sorted(files), sorted(dirs), sorted(skipped))


def list_dir(base: Path) -> tuple[list[str], list[str]]:
    """All non-hidden regular files and folders under ``base`` (see ``scan_dir``)."""
    listing = scan_dir(base)
    return listing.files, listing.dirs


def list_zip(zip_path: Path) -> tuple[list[str], list[str]]:
    """All non-hidden files and folders inside a zip archive, sorted (implied folders included)."""
    try:
        with open_zip(zip_path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"cannot read zip archive {zip_path}: {exc}; replace the file") from None
    files: set[str] = set()
    dirs: set[str] = set()
    for name in names:
        if is_hidden(name):
            continue
        if name.endswith("/"):
            dirs.add(name.rstrip("/"))
            continue
        files.add(name)
        parts = name.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return sorted(files), sorted(dirs)


def class_folders(
    files: Sequence[str], dirs: Sequence[str], base: str, depth: int, where: Path, expected: str
) -> dict[str, list[str]]:
    """Group images under ``base`` by their class folder, ``depth`` levels below ``base``.

    Returns class name (the folder path below ``base``) -> sorted image paths. Images nested
    deeper inside a class folder belong to it; files above class level are ignored. A layout
    without class folders, or a class folder without images, raises a DataError.
    """
    prefix = base + "/" if base else ""
    groups: dict[str, list[str]] = {
        d[len(prefix) :]: []
        for d in dirs
        if d.startswith(prefix) and d[len(prefix) :].count("/") == depth - 1
    }
    if not groups:
        raise DataError(f"no class folders found in {where}; expected {expected}")
    for f in files:
        if not f.startswith(prefix) or not is_image(f):
            continue
        parts = f[len(prefix) :].split("/")
        if len(parts) > depth:
            groups["/".join(parts[:depth])].append(f)
    for cls, paths in groups.items():
        if not paths:
            raise DataError(
                f"class folder {where / (prefix + cls)} holds no images; "
                f"expected {expected} (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
    return groups


def half_split(classes: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Default split: the first half (rounded down) of the sorted classes train, the rest test."""
    ordered = sorted(set(classes))
    cut = len(ordered) // 2
    return tuple(ordered[:cut]), tuple(ordered[cut:])


def verify_images(manifest: Manifest, workers: int | None = None) -> list[str]:
    """Decode every image of ``manifest``; return the relative paths that cannot be read or decoded.

    This reads and fully decodes each file, so it costs about as much as one pass of feature
    extraction; loaders call it only with ``skip_bad=True``. Bad includes a zip member that is
    encrypted or compressed with a method zipfile lacks, and an image whose shorter side
    resized to PLANNED_SHORT_SIDE would exceed MAX_RESIZED_PIXELS (a tall, thin image).
    """

    def bad(relpath: str) -> bool:
        try:
            data = manifest.source.read(relpath)
            decode_image(data, relpath, manifest.root, PLANNED_SHORT_SIDE)
        except (DataError, *READ_ERRORS):
            return True
        return False

    n_workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        flags = list(pool.map(bad, manifest.paths, chunksize=64))
    return [p for p, f in zip(manifest.paths, flags, strict=True) if f]


def make_manifest(
    name: str,
    root: Path,
    source: DirSource | ZipSource,
    images: Sequence[tuple[str, str, str | None]],
    default_train: Sequence[str],
    default_test: Sequence[str],
    skip_bad: bool,
    class_where: Callable[[str], str],
    skipped_links: Sequence[str] = (),
) -> Manifest:
    """Build a checked Manifest from (relative path, class, superclass or None) triples.

    Images are ordered by path. A class with fewer than two images raises a DataError naming
    ``class_where(class)``. With ``skip_bad`` every image is decoded; corrupt ones are dropped,
    and so is any class left with fewer than two images; everything dropped is listed in
    ``Manifest.skipped`` and dropped classes leave the default split. ``skipped_links`` (directory
    links the listing did not follow) is kept in ``Manifest.skipped_links``. A path that is not
    valid UTF-8 (split files and caches store names as UTF-8) raises a DataError naming it.
    """
    for rel, _, _ in images:
        check_utf8(rel, root)
    rows = sorted(images)
    counts = Counter(cls for _, cls, _ in rows)
    for cls in sorted(counts):
        if counts[cls] < 2:
            raise DataError(
                f"class {short(cls)} at {class_where(cls)} has {counts[cls]} image; "
                "metric learning needs at least 2 images per class: add images or remove the class"
            )
    links = tuple(skipped_links)
    manifest = _manifest(name, root, source, rows, default_train, default_test, (), links)
    if not skip_bad:
        unreadable = source.problems(manifest.paths) if isinstance(source, ZipSource) else []
        if unreadable:
            raise DataError(
                f"{len(unreadable)} image(s) in {root} cannot be read, e.g. {unreadable[0]}; "
                "or pass --skip-bad to leave them out"
            )
        return manifest
    bad = set(verify_images(manifest))
    if not bad:
        return manifest
    kept = [r for r in rows if r[0] not in bad]
    left = Counter(cls for _, cls, _ in kept)
    small = {cls for cls, n in left.items() if n < 2}
    small.update(set(counts).difference(left))
    skipped = sorted(bad) + sorted(r[0] for r in kept if r[1] in small)
    kept = [r for r in kept if r[1] not in small]
    train = [c for c in default_train if c not in small]
    test = [c for c in default_test if c not in small]
    return _manifest(name, root, source, kept, train, test, tuple(skipped), links)


def check_utf8(relpath: str, root: Path) -> None:
    """A DataError naming a path whose name is not valid UTF-8 (undecodable bytes from the OS)."""
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(relpath)
        raise DataError(
            f"file name {raw!r} under {root} is not valid UTF-8; rename it (oodml stores class "
            "and file names as UTF-8 in split files and caches)"
        ) from None


def _manifest(
    name: str,
    root: Path,
    source: DirSource | ZipSource,
    rows: Sequence[tuple[str, str, str | None]],
    default_train: Sequence[str],
    default_test: Sequence[str],
    skipped: tuple[str, ...],
    skipped_links: tuple[str, ...] = (),
) -> Manifest:
    has_super = bool(rows) and rows[0][2] is not None
    return Manifest(
        name=name,
        root=root,
        source=source,
        paths=tuple(r[0] for r in rows),
        labels=tuple(r[1] for r in rows),
        superclasses=tuple(str(r[2]) for r in rows) if has_super else None,
        default_train=tuple(default_train),
        default_test=tuple(default_test),
        skipped=skipped,
        skipped_links=skipped_links,
    )
