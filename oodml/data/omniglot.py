"""Omniglot (``omniglot``): an images_background*/images_evaluation archive, zipped or extracted.

Layout below the archive folder: <alphabet>/<characterNN>/<file>.png; class =
"alphabet/characterNN", superclass = alphabet. ROOT may be the .zip, the extracted archive
folder, or a folder holding exactly one such archive (folder or .zip). Relative paths are
"<alphabet>/<characterNN>/<file>.png" in every form, so the fingerprint does not depend on it.
Default split: the first half of the sorted classes train.
"""

from __future__ import annotations

import re
from pathlib import Path

from oodml.data.base import (
    DATASETS,
    class_folders,
    half_split,
    list_zip,
    make_manifest,
    scan_dir,
)
from oodml.data.manifest import DirSource, Manifest, ZipSource
from oodml.errors import DataError
from oodml.fileio import kind_of

LAYOUT = "<alphabet>/<characterNN>/<file>.png (an images_background*/images_evaluation archive)"
ARCHIVE = re.compile(r"^images_(background|evaluation)\w*$")


def locate_archive(root: Path) -> Path:
    """The zip or archive folder that ``root`` names or contains (preferring a folder)."""
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise DataError(f"dataset root {root} does not exist; expected {LAYOUT}")
    if root.is_file():
        if root.suffix.lower() != ".zip":
            raise DataError(f"{root} is neither a folder nor a .zip archive; expected {LAYOUT}")
        return root
    if not root.is_dir():
        raise DataError(f"dataset root {root} is {kind_of(root.stat().st_mode)}, neither "
                        f"a folder nor a .zip archive; expected {LAYOUT}")
    found: dict[str, Path] = {}
    for child in sorted(root.iterdir(), key=lambda p: (p.is_dir(), p.name)):
        stem = child.name[:-4] if child.name.lower().endswith(".zip") else child.name
        if ARCHIVE.match(stem) and (child.is_dir() or child.suffix.lower() == ".zip"):
            found[stem] = child
    if len(found) > 1:
        names = ", ".join(p.name for p in found.values())
        raise DataError(f"{root} holds several Omniglot archives ({names}); pass one as the root")
    return next(iter(found.values())) if found else root


def zip_prefix(files: list[str], zip_path: Path) -> str:
    """The top-level folder inside the zip ('' when images sit at <alphabet>/<char>/<file>)."""
    depths = {f.count("/") for f in files}
    tops = {f.split("/")[0] for f in files}
    if depths == {3} and len(tops) == 1:
        return tops.pop() + "/"
    if depths == {2}:
        return ""
    raise DataError(f"zip archive {zip_path} does not hold images as [<top>/]{LAYOUT}")


@DATASETS.register("omniglot")
def load_omniglot(root: Path, skip_bad: bool = False) -> Manifest:
    """Omniglot from a zip or an extracted folder; class = alphabet/character."""
    archive = locate_archive(root)
    source: DirSource | ZipSource
    links: list[str] = []
    if archive.is_file():
        files, dirs = list_zip(archive)
        images_only = [f for f in files if f.lower().endswith(".png")]
        prefix = zip_prefix(images_only, archive)
        files = [f[len(prefix) :] for f in files if f.startswith(prefix)]
        dirs = [d[len(prefix) :] for d in dirs if d.startswith(prefix) and d != prefix[:-1]]
        source = ZipSource(archive, prefix)
    else:
        files, dirs, links = scan_dir(archive)
        source = DirSource(archive)
    groups = class_folders(files, dirs, "", 2, archive, LAYOUT)
    images = [(p, cls, cls.split("/")[0]) for cls, paths in groups.items() for p in paths]
    train, test = half_split(groups)
    return make_manifest(
        "omniglot",
        archive,
        source,
        images,
        train,
        test,
        skip_bad,
        lambda c: str(archive / c),
        links,
    )
