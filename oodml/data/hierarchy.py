"""Class hierarchies: each class's superclass and, optionally, coarser ancestors above it.

A :class:`Hierarchy` maps every class of a dataset to its ancestors, nearest first
(``(superclass, level 2, ...)``), the same number for every class. Where they come from:

* the loader (:func:`hierarchy_of`): Omniglot's alphabet (the first path component), SOP's
  super-category (the ``*_final`` folder), CARS196's make (:func:`cars_make`); CUB200-2011
  ships none;
* a CSV file (:func:`read_hierarchy`, ``--hierarchy FILE.csv``) with rows
  ``class,superclass[,level 2,...]`` (an optional header row starting with ``class``), which
  replaces the loader's superclasses. Every dataset class must have exactly one row.

Tree distance (:meth:`Hierarchy.tree_distance`): the number of edges between two classes in
the tree whose leaves are the classes, whose level-l nodes are the distinct ancestors at
level l and whose root joins the top level. Two classes that first share an ancestor at level
l (1 = superclass) are 2 l apart; two that share none are 2 (depth + 1) apart (through the
root); a class is 0 from itself. Ancestors are compared level by level, so the same name at
two levels names two nodes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oodml.errors import DataError, short
from oodml.fileio import read_bytes

MAX_HIERARCHY_BYTES = 64 * 2**20
"""Largest hierarchy CSV read (SOP's 22,634 classes take well under 2 MB)."""

MULTIWORD_MAKES = ("AM General", "Aston Martin", "Land Rover")
"""The makes of Stanford Cars (CARS196) whose name has more than one word."""


def cars_make(class_name: str) -> str:
    """The make of a CARS196 class name ("BMW M3 Coupe 2012" -> "BMW"): a leading numeric
    prefix ("001." or "001 ") is dropped, a multi-word make (:data:`MULTIWORD_MAKES`) is kept
    whole, otherwise the first word (underscores count as spaces)."""
    name = class_name.replace("_", " ").strip()
    head, _, rest = name.partition(".")
    if head.isdigit() and rest:
        name = rest.strip()
    else:
        head, _, rest = name.partition(" ")
        if head.isdigit() and rest:
            name = rest.strip()
    for make in MULTIWORD_MAKES:
        if name.lower().startswith(make.lower() + " ") or name.lower() == make.lower():
            return make
    return name.split(" ")[0] if name else class_name


@dataclass(frozen=True)
class Hierarchy:
    """Ancestors per class, nearest first; ``source`` says where they came from (recorded in
    split files), ``sha256`` is the CSV's content hash (None for a loader's hierarchy)."""

    ancestors: Mapping[str, tuple[str, ...]]
    source: str
    sha256: str | None = None

    def __post_init__(self) -> None:
        depths = {len(a) for a in self.ancestors.values()}
        if len(depths) > 1 or 0 in depths:
            raise ValueError("every class needs the same, positive number of ancestors")

    @property
    def depth(self) -> int:
        """Ancestor levels per class (1: superclasses only)."""
        return len(next(iter(self.ancestors.values()))) if self.ancestors else 0

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted(self.ancestors))

    def superclass(self, cls: str) -> str:
        return self.ancestors[cls][0]

    def superclasses(self) -> dict[str, list[str]]:
        """Superclass -> its classes (sorted), superclasses sorted."""
        out: dict[str, list[str]] = {}
        for cls in self.classes:
            out.setdefault(self.superclass(cls), []).append(cls)
        return dict(sorted(out.items()))

    def tree_distance(self, a: str, b: str) -> int:
        """Edges between classes ``a`` and ``b`` (module docstring)."""
        if a == b:
            return 0
        for level, (x, y) in enumerate(zip(self.ancestors[a], self.ancestors[b], strict=True)):
            if x == y:
                return 2 * (level + 1)
        return 2 * (self.depth + 1)

    def nearest_distance(self, cls: str, others: Sequence[str]) -> int:
        """Tree distance from ``cls`` to the nearest class of ``others`` (``cls`` excluded):
        the first level at which one of them shares its ancestor decides it."""
        pool = [o for o in others if o != cls]
        if not pool:
            raise ValueError("no other class to measure the distance to")
        mine = self.ancestors[cls]
        for level in range(self.depth):
            if any(self.ancestors[o][level] == mine[level] for o in pool):
                return 2 * (level + 1)
        return 2 * (self.depth + 1)

    def record(self) -> dict[str, Any]:
        """What a split file records about the hierarchy it measured shift with."""
        rec: dict[str, Any] = {"source": self.source, "levels": self.depth,
                               "superclasses": len(self.superclasses())}
        if self.sha256 is not None:
            rec["sha256"] = self.sha256
        return rec

    def restricted(self, classes: Sequence[str]) -> Hierarchy:
        """The same hierarchy over ``classes`` only."""
        return Hierarchy({c: self.ancestors[c] for c in classes}, self.source, self.sha256)


def hierarchy_of(manifest: Any) -> Hierarchy | None:
    """The loader's hierarchy of ``manifest`` (one superclass per class), or None when the
    dataset has none. A class whose images disagree on their superclass is a DataError."""
    if manifest.superclasses is None:
        return None
    sup: dict[str, str] = {}
    for cls, s in zip(manifest.labels, manifest.superclasses, strict=True):
        if sup.setdefault(cls, s) != s:
            raise DataError(f"class {short(cls)} of dataset {manifest.name!r} has images in two "
                            f"superclasses ({short(sup[cls])} and {short(s)}); fix the "
                            "dataset's layout or pass --hierarchy FILE.csv")
    source = {"omniglot": "omniglot alphabets", "sop": "sop super-categories",
              "cars196": "cars196 makes"}.get(manifest.name, f"{manifest.name} loader")
    return Hierarchy({c: (sup[c],) for c in sorted(sup)}, source)


def parse_hierarchy(text: str, name: str, classes: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Rows ``class,superclass[,deeper levels]`` of a hierarchy CSV checked against the
    dataset's ``classes``: every row must name a known class, once, with the same number of
    non-empty levels, and each ancestor must have one parent (a tree). Problems are one-line
    DataErrors naming ``name`` and the row (line number)."""
    known = set(classes)
    rows: dict[str, tuple[str, ...]] = {}
    line_of: dict[str, int] = {}
    parent: dict[tuple[int, str], tuple[str, int]] = {}
    width: int | None = None
    reader = csv.reader(io.StringIO(text))
    try:
        for cells in reader:
            line = reader.line_num
            cells = [c.strip() for c in cells]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if not rows and width is None and cells[0].lower() == "class":
                width = len(cells)
                continue
            where = f"{name}:{line}"
            if len(cells) < 2:
                raise DataError(f"{where}: row {short(','.join(cells))} has no superclass; "
                                "write class,superclass[,deeper levels]")
            if width is None:
                width = len(cells)
            if len(cells) != width:
                raise DataError(f"{where}: row has {len(cells)} columns, the first row has "
                                f"{width}; give every class the same levels")
            if not all(cells):
                raise DataError(f"{where}: row {short(','.join(cells))} has an empty cell; "
                                "fill every level")
            cls, anc = cells[0], tuple(cells[1:])
            if cls not in known:
                raise DataError(f"{where}: class {short(cls)} is not a class of the dataset; "
                                "check the spelling (class names as the loader lists them)")
            if cls in rows:
                raise DataError(f"{where}: class {short(cls)} is listed again (first at line "
                                f"{line_of[cls]}); keep one row per class")
            for level in range(len(anc) - 1):
                up = parent.setdefault((level, anc[level]), (anc[level + 1], line))
                if up[0] != anc[level + 1]:
                    raise DataError(
                        f"{where}: {short(anc[level])} has parent {short(anc[level + 1])} here "
                        f"but {short(up[0])} at line {up[1]}; a hierarchy is a tree")
            rows[cls] = anc
            line_of[cls] = line
    except csv.Error as exc:
        raise DataError(f"{name}:{reader.line_num}: not valid CSV ({exc})") from None
    missing = sorted(known.difference(rows))
    if missing:
        raise DataError(f"{name}: class {short(missing[0])} has no row ({len(missing)} "
                        "dataset class(es) missing); add class,superclass for every class")
    return rows


def read_hierarchy(path: str | os.PathLike, classes: Sequence[str]) -> Hierarchy:
    """The hierarchy in the CSV at ``path`` (bounded read) for a dataset with ``classes``."""
    data = read_bytes(path, "hierarchy CSV", MAX_HIERARCHY_BYTES, error=DataError)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"hierarchy CSV {path} is not UTF-8 text (byte {exc.start}); save it "
                        "as UTF-8") from None
    rows = parse_hierarchy(text, str(path), classes)
    digest = hashlib.sha256(data).hexdigest()
    return Hierarchy(rows, f"csv {os.path.basename(os.fspath(path))}", digest)
