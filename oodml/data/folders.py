"""Class-per-folder datasets: ``imagefolder`` (ROOT/<class>/<image>) and the ooDML layout of
CUB-200-2011 and CARS196 (ROOT/images/<class>/<image>). CARS196's superclass is the make in
the class name; CUB-200-2011 and imagefolder have none (pass ``--hierarchy FILE.csv``).

Default split: the first half of the sorted classes train, the rest test (100/100 for CUB,
98/98 for CARS). Images are listed, not decoded; see ``make_manifest`` for ``skip_bad``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from oodml.data.base import (
    DATASETS,
    class_folders,
    half_split,
    make_manifest,
    require_dir,
    scan_dir,
)
from oodml.data.hierarchy import cars_make
from oodml.data.manifest import DirSource, Manifest
from oodml.errors import DataError


def load_class_folders(
    name: str, root: Path, base: str, skip_bad: bool,
    superclass: Callable[[str], str] | None = None,
) -> Manifest:
    """A dataset whose classes are the folders directly under ``root/base``; ``superclass``
    names each class's superclass (None: the dataset has none)."""
    layout = f"ROOT/{base + '/' if base else ''}<class>/<image>"
    root = require_dir(root, layout)
    if base and not (root / base).is_dir():
        raise DataError(f"{root} has no {base}/ folder; expected the layout {layout}")
    files, dirs, links = scan_dir(root)
    groups = class_folders(files, dirs, base, 1, root, layout)
    images = [(p, cls, superclass(cls) if superclass else None)
              for cls, paths in groups.items() for p in paths]
    train, test = half_split(groups)
    prefix = base + "/" if base else ""
    return make_manifest(
        name,
        root,
        DirSource(root),
        images,
        train,
        test,
        skip_bad,
        lambda c: str(root / prefix / c),
        links,
    )


@DATASETS.register("imagefolder")
def load_imagefolder(root: Path, skip_bad: bool = False) -> Manifest:
    """ROOT/<class>/<image>; default split: first half of the sorted classes train."""
    return load_class_folders("imagefolder", root, "", skip_bad)


@DATASETS.register("cub200")
def load_cub200(root: Path, skip_bad: bool = False) -> Manifest:
    """CUB-200-2011 in the ooDML layout ROOT/images/<class>/<image>; default split 100/100."""
    return load_class_folders("cub200", root, "images", skip_bad)


@DATASETS.register("cars196")
def load_cars196(root: Path, skip_bad: bool = False) -> Manifest:
    """CARS196 in the ooDML layout ROOT/images/<class>/<image>; default split 98/98;
    superclass = the make in the class name (:func:`oodml.data.hierarchy.cars_make`)."""
    return load_class_folders("cars196", root, "images", skip_bad, cars_make)
