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

from oodml.data.manifest import DirSource, Manifest, ZipSource, decode_image
from oodml.errors import DataError
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


def list_dir(base: Path) -> tuple[list[str], list[str]]:
    """All non-hidden files and folders under ``base`` as sorted '/'-separated relative paths."""
    files: list[str] = []
    dirs: list[str] = []
    for here, subdirs, names in os.walk(base, followlinks=True):
        rel = Path(here).relative_to(base).as_posix()
        prefix = "" if rel == "." else rel + "/"
        subdirs[:] = [d for d in subdirs if not is_hidden(d)]
        dirs.extend(prefix + d for d in subdirs)
        files.extend(prefix + n for n in names if not is_hidden(n))
    return sorted(files), sorted(dirs)


def list_zip(zip_path: Path) -> tuple[list[str], list[str]]:
    """All non-hidden files and folders inside a zip archive, sorted (implied folders included)."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
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
    extraction; loaders call it only with ``skip_bad=True``.
    """

    def bad(relpath: str) -> bool:
        try:
            decode_image(manifest.source.read(relpath), relpath, manifest.root)
        except (DataError, OSError, KeyError, zipfile.BadZipFile):
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
) -> Manifest:
    """Build a checked Manifest from (relative path, class, superclass or None) triples.

    Images are ordered by path. A class with fewer than two images raises a DataError naming
    ``class_where(class)``. With ``skip_bad`` every image is decoded; corrupt ones are dropped,
    and so is any class left with fewer than two images; everything dropped is listed in
    ``Manifest.skipped`` and dropped classes leave the default split.
    """
    rows = sorted(images)
    counts = Counter(cls for _, cls, _ in rows)
    for cls in sorted(counts):
        if counts[cls] < 2:
            raise DataError(
                f"class {cls!r} at {class_where(cls)} has {counts[cls]} image; "
                "metric learning needs at least 2 images per class: add images or remove the class"
            )
    manifest = _manifest(name, root, source, rows, default_train, default_test, ())
    if not skip_bad:
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
    return _manifest(name, root, source, kept, train, test, tuple(skipped))


def _manifest(
    name: str,
    root: Path,
    source: DirSource | ZipSource,
    rows: Sequence[tuple[str, str, str | None]],
    default_train: Sequence[str],
    default_test: Sequence[str],
    skipped: tuple[str, ...],
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
    )
