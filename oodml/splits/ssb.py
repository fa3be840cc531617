"""Import the Semantic Shift Benchmark's published splits (Vaze et al., ``sgvaze/SSB``).

``SSB/splits/cub_ssb_splits.json`` and ``scars_ssb_splits.json`` hold::

    {"known_classes": [i, ...],
     "unknown_classes": {"Easy": [...], "Medium": [...], "Hard": [...]},
     "known_unknown_pairs": {...}}          (CUB only; not needed here)

where each i is a 0-based class index: CUB's class id - 1 (``classes.txt``, the folder prefix
"001." of class 0) and Stanford Cars' label - 1 (the order of ``cars_meta.mat``). The import
makes a three-level ladder, Easy, Medium, Hard: train = the known classes, test = that level's
unknown classes, removed = every other class. It is ordered by the benchmark's semantic level,
not by distance (procedure ``ssb``); each level gets its Fréchet distance with the usual
intervals, sub-splits and episodes.

Index -> class name: a class folder that starts with its 1-based id ("001.Black_footed_
Albatross", "001 Acura ...") maps directly; CUB's folders without ids map by sorted name
(their standard order). CARS196 folders without ids need ``class_names`` (one name per line
in the dataset's class-id order, e.g. from ``cars_meta.mat``): their sorted order differs
from the id order ("AM General ..." sorts before "Acura ..." but "Acura" ids come later).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from typing import Any

from oodml.errors import ConfigError, SplitFileError, short
from oodml.fileio import read_bytes, read_text

SSB_LEVELS = ("Easy", "Medium", "Hard")
SSB_DATASETS = ("cub200", "cars196")
MAX_SSB_BYTES = 16 * 2**20
ID_PREFIX = re.compile(r"^(\d+)[. _]")


def parse_ssb(data: bytes, name: str) -> tuple[list[int], dict[str, list[int]]]:
    """(known indices, level -> unknown indices) of an SSB split file; every problem is a
    one-line SplitFileError naming ``name`` (malformed JSON, a missing or ill-typed field, an
    index listed twice or both known and unknown)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        why = " ".join(str(exc).split())[:120]
        raise SplitFileError(f"{name} is not valid UTF-8 JSON ({why}); use the SSB file as "
                             "published") from None
    if not isinstance(doc, dict):
        raise SplitFileError(f"{name}: the document is not a JSON object with known_classes "
                             "and unknown_classes")

    def indices(value: Any, where: str) -> list[int]:
        if not isinstance(value, list) or not value or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value):
            raise SplitFileError(f"{name}: {where} must be a non-empty list of class indices "
                                 "(integers >= 0)")
        if len(set(value)) != len(value):
            dup = next(i for i in value if value.count(i) > 1)
            raise SplitFileError(f"{name}: {where} lists class index {dup} twice")
        return list(value)

    if "known_classes" not in doc or "unknown_classes" not in doc:
        raise SplitFileError(f"{name}: known_classes or unknown_classes is missing; is this "
                             "an SSB split file?")
    known = indices(doc["known_classes"], "known_classes")
    raw = doc["unknown_classes"]
    if not isinstance(raw, dict) or set(raw) != set(SSB_LEVELS):
        got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise SplitFileError(f"{name}: unknown_classes must map exactly {', '.join(SSB_LEVELS)} "
                             f"to class indices, got {short(got)}")
    unknown = {lv: indices(raw[lv], f"unknown_classes.{lv}") for lv in SSB_LEVELS}
    seen: dict[int, str] = {i: "known_classes" for i in known}
    for lv in SSB_LEVELS:
        for i in unknown[lv]:
            if i in seen:
                raise SplitFileError(f"{name}: class index {i} is in both {seen[i]} and "
                                     f"unknown_classes.{lv}; the sets must be disjoint")
            seen[i] = f"unknown_classes.{lv}"
    return known, unknown


def index_names(manifest: Any, class_names: Sequence[str] | None = None) -> list[str]:
    """The dataset's class names in SSB index order (module docstring)."""
    classes = list(manifest.classes)
    if class_names is not None:
        missing = [c for c in class_names if c not in manifest.class_counts]
        if missing or len(class_names) != len(classes) or len(set(class_names)) != len(classes):
            what = (f"names {short(missing[0])}, which is no class of the dataset" if missing
                    else f"has {len(class_names)} names ({len(set(class_names))} distinct) for "
                    f"{len(classes)} classes")
            raise ConfigError(f"the class-names list {what}; list every class once, in "
                              "class-id order")
        return list(class_names)
    ids = [ID_PREFIX.match(c) for c in classes]
    if all(ids):
        by_id = {int(m.group(1)): c for m, c in zip(ids, classes, strict=True)}  # type: ignore[union-attr]
        if sorted(by_id) == list(range(1, len(classes) + 1)):
            return [by_id[i] for i in range(1, len(classes) + 1)]
    if manifest.name == "cub200":
        return classes
    raise ConfigError(f"the {manifest.name} class folders at {manifest.root} carry no class ids "
                      "(a '001.' prefix), so SSB's indices cannot be mapped to them; pass "
                      "--class-names FILE with one class name per line in class-id order")


def read_class_names(path: str | os.PathLike) -> list[str]:
    """One class name per non-empty line (bounded read)."""
    text = read_text(path, "class-names list", MAX_SSB_BYTES)
    return [line.strip() for line in text.splitlines() if line.strip()]


def ssb_sides(path: str | os.PathLike, manifest: Any, class_names: Sequence[str] | None = None
              ) -> tuple[tuple[str, ...], list[tuple[str, tuple[str, ...]]], str]:
    """(train classes, [(level, test classes)] Easy..Hard, sha256 of the file) of the SSB
    split file at ``path`` for ``manifest``'s classes."""
    data = read_bytes(path, "SSB split file", MAX_SSB_BYTES, error=SplitFileError)
    known, unknown = parse_ssb(data, str(path))
    names = index_names(manifest, class_names)
    for where, idx in (("known_classes", known),
                       *((f"unknown_classes.{lv}", unknown[lv]) for lv in SSB_LEVELS)):
        bad = [i for i in idx if i >= len(names)]
        if bad:
            raise SplitFileError(
                f"{path}: {where} lists class index {bad[0]}, but dataset {manifest.name!r} at "
                f"{manifest.root} has {len(names)} classes (indices 0..{len(names) - 1}); use "
                "the SSB file of this dataset")
    train = tuple(sorted(names[i] for i in known))
    levels = [(lv, tuple(sorted(names[i] for i in unknown[lv]))) for lv in SSB_LEVELS]
    for lv, test in levels:
        if len(test) < 2 or len(train) < 2:
            raise SplitFileError(f"{path}: level {lv} needs at least 2 known and 2 unknown "
                                 "classes")
    return train, levels, hashlib.sha256(data).hexdigest()


def import_ssb(path: str | os.PathLike, manifest: Any, featureset: Any, config: Any = None,
               *, class_names: Sequence[str] | None = None, hierarchy: Any = None,
               progress: Any = None) -> Any:
    """The SSB split file at ``path`` as an oodml split file over ``manifest`` (three levels,
    Easy first), with distances from ``featureset`` and the sub-splits, intervals and
    semantic shift that ``config`` (a LadderConfig; default settings when None) asks for."""
    from oodml.data.hierarchy import hierarchy_of
    from oodml.progress import NO_PROGRESS
    from oodml.splits.generate import LadderConfig, finish_splitfile, split_distances
    from oodml.stats.class_stats import ClassStats

    if manifest.name not in SSB_DATASETS:
        raise ConfigError(f"SSB splits exist for {', '.join(SSB_DATASETS)}, not "
                          f"{short(manifest.name)}")
    if featureset.fingerprint != manifest.fingerprint:
        raise ConfigError("features are for another version of the dataset; recompute them")
    config = config or LadderConfig()
    train, levels, digest = ssb_sides(path, manifest, class_names)
    stats = ClassStats.from_features(featureset.features, featureset.labels)
    dist = split_distances(stats, [(train, test) for _, test in levels], config.mode,
                           config.eps)
    everything = set(manifest.classes)
    rows = [(d, False, train, test, tuple(sorted(everything - set(train) - set(test))))
            for d, (_, test) in zip(dist, levels, strict=True)]
    selection = {"levels": [lv for lv, _ in levels], "targets": None, "test_fixed": False}
    params: dict[str, Any] = {"file": os.path.basename(os.fspath(path)), "sha256": digest}
    if config.eps is not None:
        params["eps"] = config.eps
    if hierarchy is None and config.semantic:
        hierarchy = hierarchy_of(manifest)
    return finish_splitfile(manifest, featureset, config, stats, progress or NO_PROGRESS, rows,
                            selection, params, None, hierarchy if config.semantic else None,
                            procedure="ssb")
