"""Split files: a ladder of train/test class splits as versioned, checksummed, deterministic JSON.

Canonical form (what the ``sha256`` field covers): the document without ``sha256``, dumped with
sorted keys, ``separators=(",", ":")`` and UTF-8. Every float (distances, parameters) is rounded to
``FLOAT_DIGITS`` significant digits and written as the ``repr`` of the rounded float, so a file
survives load -> save byte for byte. The file on disk is the same document plus ``sha256``,
dumped with sorted keys and ``indent=1`` and a trailing newline.

Unknown metadata (an imported ooDML pickle without ``--dataset``) is ``null``: the dataset
fingerprint, the per-class image counts, the extractor's weights and the seed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from oodml import __version__
from oodml.data.manifest import path_problem
from oodml.errors import ChecksumMismatch, SplitFileError, short
from oodml.fileio import atomic_write_bytes, read_bytes
from oodml.splits.trajectory import is_strictly_increasing

SCHEMA = "oodml-splits/1"
FLOAT_DIGITS = 12
MAX_SPLITFILE_BYTES = 2**30
DEFAULT_SEED = 0
"""Seed of the draws made for a split file that records none (an imported ooDML pickle): the
bootstrap intervals of its distances (recorded as ``uncertainty["bootstrap_seed"]``), and the
size-controlled galleries and metric intervals of its runs (recorded in the run config as
``gallery.seed``). Fixed like a file's own seed, so every method, seed and rerun of a split
sees the same draws."""
"""Largest split file read (a published Omniglot ladder is 4.5 MB; SOP's with episodes, a few
hundred MB at most)."""

Episodes = dict[int, list[dict[str, list[str]]]]


@dataclass(frozen=True)
class PairedDiff:
    """Distance difference of a split against another (``diff`` = this minus that), its
    interval [``low``, ``high``] and the bootstrap probability ``flip`` that the order flips
    (:mod:`oodml.splits.paired`)."""

    diff: float
    low: float
    high: float
    flip: float

    @property
    def p_value(self) -> float:
        """Two-sided bootstrap p-value of "no difference": min(1, 2 flip)."""
        return min(1.0, 2.0 * self.flip)


@dataclass(frozen=True)
class Split:
    """One rung of the ladder; ``id`` counts from 1 (easiest) upwards.

    ``distance`` is kept rounded to FLOAT_DIGITS significant digits, the value the file stores.
    ``distance_ci`` is the (low, high) bootstrap interval of the distance
    (:mod:`oodml.splits.uncertainty`), or None; written only when set, so files without it
    keep their bytes and checksum. ``vs_previous`` is the paired bootstrap difference of this
    split's distance against the split before it (:class:`~oodml.splits.paired.PairedDiff`:
    difference, 95% interval, probability that the order flips), or None; written only when
    set.
    """

    id: int
    distance: float
    is_start: bool
    train: tuple[str, ...]
    test: tuple[str, ...]
    removed: tuple[str, ...] = ()
    val_train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    episodes: Episodes = field(default_factory=dict)
    episodes_skipped: dict[int, tuple[str, ...]] = field(default_factory=dict)
    distance_ci: tuple[float, float] | None = None
    vs_previous: PairedDiff | None = None
    semantic: dict[str, float] | None = None
    """The split's semantic shift (:mod:`oodml.splits.semantic`: ``unseen_share`` and, with a
    deeper hierarchy, ``tree_distance``), or None; written only when set."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "distance", round_float(float(self.distance)))
        if self.distance_ci is not None:
            lo, hi = (round_float(float(v)) for v in self.distance_ci)
            object.__setattr__(self, "distance_ci", (lo, hi))
        if self.vs_previous is not None:
            v = self.vs_previous
            object.__setattr__(self, "vs_previous", PairedDiff(
                *(round_float(float(x)) for x in (v.diff, v.low, v.high, v.flip))))
        if self.semantic is not None:
            object.__setattr__(self, "semantic", {
                k: round_float(float(v)) for k, v in sorted(self.semantic.items())})


@dataclass(frozen=True)
class SplitFile:
    """A ladder plus everything needed to reproduce and check it against a dataset."""

    dataset_name: str
    dataset_fingerprint: str | None
    class_counts: dict[str, int] | None
    extractor: str
    weights_sha256: str | None
    distance_mode: str
    procedure: str
    params: dict[str, Any]
    seed: int | None
    ladder: list[Split]
    oodml_version: str = __version__
    selection: dict[str, Any] = field(default_factory=dict)
    subsplits: dict[str, Any] = field(default_factory=dict)
    measure: dict[str, Any] | None = None
    """The measure's settings (:meth:`oodml.stats.measures.base.Measure.record`; for
    w2-classes also ``solvers``, the solvers that produced the distances) when the ladder was
    walked by another measure than ``frechet``; None (and not written) for frechet,
    so files made before measures existed keep their bytes."""

    @property
    def measure_name(self) -> str:
        """The measure the distances were computed with (``frechet`` unless recorded)."""
        return "frechet" if self.measure is None else str(self.measure.get("name", "?"))
    uncertainty: dict[str, Any] = field(default_factory=dict)
    hierarchy: dict[str, Any] | None = None
    """The class hierarchy the splits' semantic shift was measured with
    (:meth:`oodml.data.hierarchy.Hierarchy.record`), or None (not written)."""
    precision: str = "fp32"
    """The precision of the features the distances came from (``FeatureSet.precision``);
    written only when it is not ``fp32``, so fp32 files keep their bytes."""

    @property
    def ordered_by_semantics(self) -> bool:
        """Whether the ladder is ordered by semantic level (hierarchy, SSB) rather than by
        distance, so its distances need not increase."""
        return self.procedure in ("hierarchy", "ssb")

    @cached_property
    def sha256(self) -> str:
        """sha256 of the canonical form (see the module docstring)."""
        return hashlib.sha256(canonical_bytes(to_document(self))).hexdigest()

    def split(self, split_id: int) -> Split:
        for s in self.ladder:
            if s.id == split_id:
                return s
        ids = ", ".join(str(s.id) for s in self.ladder)
        raise SplitFileError(f"split id {split_id} is not in the ladder; choose one of: {ids}")

    def check_against(self, manifest: Any) -> None:
        """Raise SplitFileError unless this file was made for exactly ``manifest``'s images."""
        if self.dataset_fingerprint is None:
            unknown = sorted(set(all_classes(self)).difference(manifest.class_counts))
            if unknown:
                raise SplitFileError(
                    f"split file names {len(unknown)} class(es) not in dataset "
                    f"{manifest.name!r} at {manifest.root}: "
                    + ", ".join(short(c) for c in unknown[:5])
                )
            return
        if self.dataset_fingerprint != manifest.fingerprint:
            raise SplitFileError(
                f"split file is for dataset {short(self.dataset_name)} with fingerprint "
                f"{self.dataset_fingerprint[:12]}..., but {manifest.root} has "
                f"{manifest.fingerprint[:12]}... ({len(manifest.classes)} classes, "
                f"{len(manifest)} images); use the dataset version the file was made for "
                "or regenerate the split file"
            )


def seed_of(sf: SplitFile) -> int:
    """The file's seed, else :data:`DEFAULT_SEED` (a file without one)."""
    return DEFAULT_SEED if sf.seed is None else int(sf.seed)


def all_classes(sf: SplitFile) -> list[str]:
    """Every class named anywhere in the ladder, sorted."""
    names: set[str] = set()
    for s in sf.ladder:
        names.update(s.train, s.test, s.removed)
    return sorted(names)


def round_float(x: float) -> float:
    """Round to FLOAT_DIGITS significant digits (the stored value)."""
    return float(f"{x:.{FLOAT_DIGITS}g}")


def _canon(obj: Any, where: str) -> Any:
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise SplitFileError(f"cannot write {where}: {obj} is not a finite number")
        return round_float(obj)
    if isinstance(obj, Mapping):
        return {str(k): _canon(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canon(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "item"):  # numpy scalars
        return _canon(obj.item(), where)
    raise SplitFileError(f"cannot write {where}: unsupported value of type {type(obj).__name__}")


def _split_document(s: Split) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": s.id,
        "distance": s.distance,
        "is_start": s.is_start,
        "train": list(s.train),
        "test": list(s.test),
        "removed": list(s.removed),
        "val_train": list(s.val_train),
        "val": list(s.val),
        "episodes": {str(k): v for k, v in sorted(s.episodes.items())},
        "episodes_skipped": {str(k): list(v) for k, v in sorted(s.episodes_skipped.items())},
    }
    if s.distance_ci is not None:
        doc["distance_ci"] = list(s.distance_ci)
    if s.vs_previous is not None:
        v = s.vs_previous
        doc["vs_previous"] = {"diff": v.diff, "ci": [v.low, v.high], "flip_probability": v.flip}
    if s.semantic is not None:
        doc["semantic"] = dict(s.semantic)
    return doc


def to_document(sf: SplitFile) -> dict[str, Any]:
    """The JSON document without ``sha256``, floats rounded."""
    doc = {
        "schema": SCHEMA,
        "oodml_version": sf.oodml_version,
        "dataset": {
            "name": sf.dataset_name,
            "fingerprint": sf.dataset_fingerprint,
            "class_counts": sf.class_counts,
        },
        "extractor": {"name": sf.extractor, "weights_sha256": sf.weights_sha256,
                      **({"precision": sf.precision} if sf.precision != "fp32" else {})},
        "distance_mode": sf.distance_mode,
        "procedure": {"name": sf.procedure, "params": sf.params},
        "selection": sf.selection,
        "subsplits": sf.subsplits,
        "seed": sf.seed,
        "ladder": [_split_document(s) for s in sf.ladder],
    }
    if sf.measure is not None:
        doc["measure"] = sf.measure
    if sf.uncertainty:
        doc["uncertainty"] = sf.uncertainty
    if sf.hierarchy is not None:
        doc["hierarchy"] = sf.hierarchy
    return _canon(doc, "split file")


def sha256_of(body: Mapping[str, Any]) -> str:
    """sha256 of a document's canonical form; a value JSON cannot hold gives '' (no match)."""
    try:
        return hashlib.sha256(canonical_bytes(body)).hexdigest()
    except (ValueError, TypeError, RecursionError):
        return ""


def canonical_bytes(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def dumps(sf: SplitFile) -> bytes:
    """The exact bytes ``save_splitfile`` writes."""
    doc = to_document(sf)
    doc["sha256"] = hashlib.sha256(canonical_bytes(doc)).hexdigest()
    text = json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def save_splitfile(sf: SplitFile, path: str | os.PathLike) -> Path:
    """Validate, then write atomically; the same SplitFile always gives the same bytes."""
    data = dumps(sf)
    loads(data, str(path))
    return atomic_write_bytes(path, data, what="split file")


def load_splitfile(path: str | os.PathLike, *, check_sha: bool = True) -> SplitFile:
    """Read and validate a split file; any problem raises a one-line SplitFileError.

    ``check_sha=False`` accepts a file whose checksum does not match (for ``verify``, which
    reports the mismatch and goes on to check the content)."""
    p = Path(path)
    data = read_bytes(p, "split file", MAX_SPLITFILE_BYTES, error=SplitFileError)
    sf = loads(data, str(p), check_sha=check_sha)
    if not sf.ladder:
        raise SplitFileError(
            f"split file {p} holds no splits (its ladder is empty); regenerate it with "
            "oodml splits generate"
        )
    return sf


def loads(data: bytes, name: str = "<split file>", *, check_sha: bool = True) -> SplitFile:
    """Parse and validate split-file bytes (``name`` appears in error messages)."""
    return from_document(parse_json(data, name), name, check_sha=check_sha)


def parse_json(data: bytes, name: str) -> Any:
    """The JSON document; non-finite or out-of-range numbers, integers of more than 4300
    digits, nesting deeper than the parser's recursion limit and bad UTF-8 are one-line
    SplitFileErrors."""
    try:
        return json.loads(
            data.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float
        )
    except (UnicodeDecodeError, ValueError) as exc:
        why = " ".join(str(exc).split())[:200]
        raise SplitFileError(f"{name} is not valid UTF-8 JSON ({why}); regenerate it") from None
    except RecursionError:
        raise SplitFileError(
            f"{name} is nested too deeply to be a split file; regenerate it"
        ) from None


def load_for_verify(path: str | os.PathLike) -> tuple[SplitFile, list[str]]:
    """Read a split file for ``verify``: returns the SplitFile and every problem found while
    reading it (checksum mismatch, a class on two sides or listed twice, an unknown class, a
    bad image path, wrong ids), instead of stopping at the first.

    Only a file that cannot be read into a SplitFile at all (not JSON, unknown schema, a field
    of the wrong type) raises a SplitFileError. Bad image paths are dropped from the episodes
    (and reported); duplicated classes are kept once (and reported)."""
    p = Path(path)
    data = read_bytes(p, "split file", MAX_SPLITFILE_BYTES, error=SplitFileError)
    problems: list[str] = []
    sf = from_document(parse_json(data, str(p)), str(p), problems=problems)
    return sf, problems


def _reject_constant(token: str) -> float:
    raise ValueError(f"non-finite number {token}")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"number {token[:30]} is out of range")
    return value


class _Reader:
    """Typed field access that names the file and the field in every error."""

    def __init__(self, name: str, problems: list[str] | None = None) -> None:
        self.name = name
        self.problems = problems

    def fail(self, where: str, what: str) -> SplitFileError:
        what = _join(where, what)
        return SplitFileError(f"{self.name}: {what}; regenerate or fix the split file")

    def problem(self, where: str, what: str) -> None:
        """A problem that leaves the file readable: collected when the reader collects
        problems (``load_for_verify``), raised otherwise."""
        if self.problems is None:
            raise self.fail(where, what)
        self.problems.append(_join(where, what))

    def get(self, obj: Any, key: str, where: str, types: type | tuple[type, ...]) -> Any:
        if not isinstance(obj, dict):
            raise self.fail(where or "document", "is not a JSON object")
        if key not in obj:
            raise self.fail(f"{where}.{key}" if where else key, "is missing")
        value = obj[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
            field_name = f"{where}.{key}" if where else key
            raise self.fail(field_name, f"has the wrong type ({value!r:.40})")
        return value

    def names(self, obj: Any, key: str, where: str) -> tuple[str, ...]:
        values = self.get(obj, key, where, list)
        if not all(isinstance(v, str) and v for v in values):
            raise self.fail(f"{where}.{key}", "must be a list of non-empty strings")
        seen: set[str] = set()
        for v in values:
            if v in seen:
                self.problem(f"{where}.{key}", f"lists class {short(v)} twice (duplicated class)")
            seen.add(v)
        return tuple(dict.fromkeys(values))


def _join(where: str, what: str) -> str:
    return f"{where} {what}" if where else what


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _int_key(r: _Reader, key: str, where: str) -> int:
    try:
        value = int(key)
    except ValueError:
        raise r.fail(where, f"has key {short(key)}, which is not a shot count") from None
    if value <= 0 or str(value) != key:
        raise r.fail(where, f"has key {short(key)}, which is not a positive shot count")
    return value


def episode_problems(
    split_id: int, shots: int, e: int, ep: Mapping[str, Any], expected: set[str]
) -> list[str]:
    """What is wrong with episode ``e`` of the ``shots``-shot set of split ``split_id``: a class
    that is not in ``expected`` (the split's test classes less those skipped at this shot
    count), an expected class without support images, or a class without exactly ``shots``
    support images. One line each, the split, shots and class named (``load_splitfile``, the
    importer and ``verify`` all use these lines)."""
    out: list[str] = []
    where = f"split {split_id}: {shots}-shot episode {e}"
    extra = sorted(set(ep).difference(expected))
    if extra:
        out.append(f"{where} has support images for {short(extra[0])}, which is not a test "
                   f"class of the split ({len(extra)} such class(es))")
    missing = sorted(expected.difference(ep))
    if missing:
        out.append(f"{where} does not cover the test classes: no support images for "
                   f"{short(missing[0])} ({len(missing)} class(es) missing)")
    wrong = [(c, len(p)) for c, p in ep.items() if isinstance(p, list) and len(p) != shots]
    if wrong:
        cls, n = wrong[0]
        out.append(f"{where} has {len(wrong)} support set(s) of the wrong size, e.g. class "
                   f"{short(cls)} has {n} support image(s), not {shots}")
    return out


def _read_episodes(
    r: _Reader, obj: Any, where: str, test: tuple[str, ...], split_id: int
) -> tuple[Episodes, dict[int, tuple[str, ...]]]:
    raw = r.get(obj, "episodes", where, dict)
    episodes: Episodes = {}
    test_set = set(test)
    for key, eps in raw.items():
        shots = _int_key(r, key, f"{where}.episodes")
        if not isinstance(eps, list):
            raise r.fail(f"{where}.episodes.{key}", "must be a list of episodes")
        out: list[dict[str, list[str]]] = []
        for e, ep in enumerate(eps):
            ew = f"{where}.episodes.{key}[{e}]"
            if not isinstance(ep, dict):
                raise r.fail(ew, "must map class names to support image paths")
            support: dict[str, list[str]] = {}
            for cls, paths in ep.items():
                if not isinstance(paths, list):
                    raise r.fail(f"{ew}.{short(cls)}", "must be a list of image paths")
                kept = []
                for p in paths:
                    why = path_problem(p)
                    if why:
                        r.problem(f"{ew}.{short(cls)}", f"image path {p!r:.80} {why}")
                    else:
                        kept.append(p)
                if len(set(kept)) != len(kept):
                    r.problem(f"{ew}.{short(cls)}", "lists an image twice")
                support[cls] = kept
            out.append(support)
        episodes[shots] = out
    raw_skipped = r.get(obj, "episodes_skipped", where, dict)
    skipped: dict[int, tuple[str, ...]] = {}
    for key in raw_skipped:
        shots = _int_key(r, key, f"{where}.episodes_skipped")
        skipped[shots] = r.names(raw_skipped, key, f"{where}.episodes_skipped")
        if not test_set.issuperset(skipped[shots]):
            r.problem(f"{where}.episodes_skipped.{key}", "names a class that is no test class")
    for shots, eps in episodes.items():
        expected = test_set.difference(skipped.get(shots, ()))
        for e, ep in enumerate(eps):
            for problem in episode_problems(split_id, shots, e, ep, expected):
                r.problem("", problem)
    return episodes, skipped


def _read_split(r: _Reader, obj: Any, index: int, known: set[str] | None) -> Split:
    where = f"ladder[{index}]"
    split_id = r.get(obj, "id", where, int)
    distance = r.get(obj, "distance", where, (int, float))
    try:
        distance = float(distance)
    except OverflowError:
        raise r.fail(f"{where}.distance", "is out of range") from None
    if distance < 0:
        r.problem(f"{where}.distance", f"is negative ({distance:.6g}); distances are >= 0")
    is_start = r.get(obj, "is_start", where, bool)
    lists = {k: r.names(obj, k, where) for k in ("train", "test", "removed", "val_train", "val")}
    if known is not None:
        for k, names in lists.items():
            unknown = [c for c in names if c not in known]
            if unknown:
                r.problem(f"{where}.{k}",
                          f"names unknown class {short(unknown[0])} (not in dataset)")
    sides = ("train", "test", "removed")
    for i, a in enumerate(sides):
        for b in sides[i + 1 :]:
            both = sorted(set(lists[a]).intersection(lists[b]))
            if both:
                r.problem(where, f"puts class {short(both[0])} in both {a} and {b}")
    if set(lists["val_train"]).intersection(lists["val"]):
        r.problem(where, "has a class in both val_train and val")
    if not set(lists["train"]).issuperset(lists["val_train"] + lists["val"]):
        r.problem(where, "has a validation class that is not a train class")
    episodes, skipped = _read_episodes(r, obj, where, lists["test"], split_id)
    return Split(
        id=split_id,
        distance=float(distance),
        is_start=is_start,
        episodes=episodes,
        episodes_skipped=skipped,
        distance_ci=_read_ci(r, obj, where),
        vs_previous=_read_paired(r, obj, where),
        semantic=_read_semantic(r, obj, where),
        **lists,
    )


SEMANTIC_KEYS = {"unseen_share": 1.0, "tree_distance": None}
"""The semantic figures a split may carry, with their upper bound (None: none)."""


def _read_semantic(r: _Reader, obj: Any, where: str) -> dict[str, float] | None:
    """The optional ``semantic`` field: {"unseen_share": share, ["tree_distance": d >= 0]}."""
    if "semantic" not in obj:
        return None
    sem = r.get(obj, "semantic", where, dict)
    w = f"{where}.semantic"
    out = {}
    for key, value in sem.items():
        if key not in SEMANTIC_KEYS:
            raise r.fail(w, f"has unknown field {short(key)}")
        value = r.get(sem, key, w, (int, float))
        top = SEMANTIC_KEYS[key]
        if value < 0 or (top is not None and value > top):
            raise r.fail(f"{w}.{key}", f"must lie in [0, {top if top is not None else 'inf'}]")
        out[key] = float(value)
    if "unseen_share" not in out:
        raise r.fail(f"{w}.unseen_share", "is missing")
    return out


def _read_paired(r: _Reader, obj: Any, where: str) -> Any:
    """The optional ``vs_previous`` field: {"diff", "ci": [low, high], "flip_probability"}."""
    if "vs_previous" not in obj:
        return None
    v = r.get(obj, "vs_previous", where, dict)
    w = f"{where}.vs_previous"
    diff = r.get(v, "diff", w, (int, float))
    ci = r.get(v, "ci", w, list)
    flip = r.get(v, "flip_probability", w, (int, float))
    if len(ci) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                               for x in ci) or ci[0] > ci[1]:
        raise r.fail(f"{w}.ci", "must be [low, high] with low <= high")
    if not 0.0 <= flip <= 1.0:
        raise r.fail(f"{w}.flip_probability", "must be a probability in [0, 1]")
    extra = set(v).difference({"diff", "ci", "flip_probability"})
    if extra:
        raise r.fail(w, f"has unknown field {sorted(extra)[0]!r}")
    return PairedDiff(float(diff), float(ci[0]), float(ci[1]), float(flip))


def _read_ci(r: _Reader, obj: Any, where: str) -> tuple[float, float] | None:
    """The optional ``distance_ci`` field: [low, high] with low <= high, or absent."""
    if "distance_ci" not in obj:
        return None
    ci = r.get(obj, "distance_ci", where, list)
    if len(ci) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               for v in ci) or ci[0] > ci[1]:
        raise r.fail(f"{where}.distance_ci", "must be [low, high] with low <= high")
    return float(ci[0]), float(ci[1])


def from_document(
    doc: Any,
    name: str = "<split file>",
    *,
    check_sha: bool = True,
    problems: list[str] | None = None,
) -> SplitFile:
    """Validate a parsed document (schema, checksum, classes, paths) and build the SplitFile.

    With a ``problems`` list, problems that leave the document readable (including the
    checksum) are appended to it instead of raised (see ``load_for_verify``)."""
    r = _Reader(name, problems)
    if not isinstance(doc, dict):
        raise r.fail("document", "is not a JSON object")
    schema = r.get(doc, "schema", "", str)
    if schema != SCHEMA:
        raise SplitFileError(
            f"{name}: unknown schema version {short(schema)} (this oodml reads {SCHEMA!r}); "
            "upgrade oodml or regenerate the file"
        )
    stored_sha = r.get(doc, "sha256", "", str)
    body = {k: v for k, v in doc.items() if k != "sha256"}
    if (check_sha or problems is not None) and sha256_of(body) != stored_sha:
        mismatch = (
            f"{name}: checksum mismatch (the file was edited by hand or damaged); "
            "regenerate it with `oodml splits generate` instead of editing it"
        )
        if problems is None:
            raise ChecksumMismatch(mismatch)
        problems.append(mismatch)
    dataset = r.get(doc, "dataset", "", dict)
    counts = r.get(dataset, "class_counts", "dataset", (dict, type(None)))
    if counts is not None and not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()
    ):
        raise r.fail("dataset.class_counts", "must map class names to image counts")
    extractor = r.get(doc, "extractor", "", dict)
    procedure = r.get(doc, "procedure", "", dict)
    ladder_raw = r.get(doc, "ladder", "", list)
    known = set(counts) if counts is not None else None
    ladder = [_read_split(r, s, i, known) for i, s in enumerate(ladder_raw)]
    ids = [s.id for s in ladder]
    if ids != list(range(1, len(ladder) + 1)):
        r.problem("ladder", f"ids must be 1..{len(ladder)} in order, got {ids[:20]}")
    if sum(s.is_start for s in ladder) > 1:
        r.problem("ladder", "marks more than one split as the start")
    seed = r.get(doc, "seed", "", (int, type(None)))
    sf = SplitFile(
        dataset_name=r.get(dataset, "name", "dataset", str),
        dataset_fingerprint=r.get(dataset, "fingerprint", "dataset", (str, type(None))),
        class_counts=counts,
        extractor=r.get(extractor, "name", "extractor", str),
        weights_sha256=r.get(extractor, "weights_sha256", "extractor", (str, type(None))),
        distance_mode=r.get(doc, "distance_mode", "", str),
        procedure=r.get(procedure, "name", "procedure", str),
        params=r.get(procedure, "params", "procedure", dict),
        seed=seed,
        ladder=ladder,
        oodml_version=r.get(doc, "oodml_version", "", str),
        selection=r.get(doc, "selection", "", dict),
        subsplits=r.get(doc, "subsplits", "", dict),
        measure=_read_measure(r, doc),
        uncertainty=r.get(doc, "uncertainty", "", dict) if "uncertainty" in doc else {},
        hierarchy=r.get(doc, "hierarchy", "", dict) if "hierarchy" in doc else None,
        precision=_read_precision(r, extractor),
    )
    return sf


FILE_PRECISIONS = ("fp32", "bf16", "fp16")


def _read_precision(r: _Reader, extractor: dict[str, Any]) -> str:
    """The optional ``extractor.precision`` (absent: fp32)."""
    if "precision" not in extractor:
        return "fp32"
    value = r.get(extractor, "precision", "extractor", str)
    if value not in FILE_PRECISIONS:
        raise r.fail("extractor.precision", f"must be one of {', '.join(FILE_PRECISIONS)}")
    return value


def _read_measure(r: _Reader, doc: dict[str, Any]) -> dict[str, Any] | None:
    """The optional ``measure`` record: an object with a string ``name``, or absent."""
    if "measure" not in doc:
        return None
    rec = r.get(doc, "measure", "", dict)
    name = r.get(rec, "name", "measure", str)
    if name == "frechet":
        raise r.fail("measure", "frechet is the default and is never recorded")
    return rec


def overlapping_levels(sf: SplitFile) -> list[tuple[int, int]]:
    """Ids (a, b) of adjacent splits whose distance intervals overlap, in ladder order;
    splits without ``distance_ci`` are skipped. Such a pair is not reliably ordered by
    difficulty: resampling the classes could swap it."""
    out = []
    for a, b in zip(sf.ladder[:-1], sf.ladder[1:], strict=True):
        if a.distance_ci is None or b.distance_ci is None:
            continue
        if a.distance_ci[1] >= b.distance_ci[0] and b.distance_ci[1] >= a.distance_ci[0]:
            out.append((a.id, b.id))
    return out


def verify(sf: SplitFile, manifest: Any, features: Any = None, *, rtol: float = 1e-4) -> list[str]:
    """Every problem of ``sf`` against ``manifest`` (and ``features``), one line each; [] if sound.

    Checks the dataset fingerprint and class counts, that every class and episode image exists
    with the right class, the validation partition and support-set sizes, and, given a FeatureSet,
    that its extractor matches and that each distance recomputed from it agrees within ``rtol``.
    """
    problems: list[str] = []
    if not sf.ladder:
        problems.append("the ladder holds no splits")
    if sf.dataset_fingerprint is not None and sf.dataset_fingerprint != manifest.fingerprint:
        problems.append(
            f"dataset fingerprint {manifest.fingerprint[:12]}... of {manifest.root} differs from "
            f"the split file's {sf.dataset_fingerprint[:12]}..."
        )
    counts = manifest.class_counts
    for cls, n in sorted((sf.class_counts or {}).items()):
        if counts.get(cls, 0) != n:
            has = f"{counts[cls]}" if cls in counts else "no such class"
            problems.append(f"class {short(cls)}: split file says {n} images, dataset has {has}")
    label_of = dict(zip(manifest.paths, manifest.labels, strict=True))
    for s in sf.ladder:
        problems.extend(_verify_split(s, counts, label_of))
    if sf.ordered_by_semantics:
        shares = [(s.semantic or {}).get("unseen_share") for s in sf.ladder]
        if sf.procedure == "hierarchy" and (None in shares or not is_strictly_increasing(
                shares)):
            problems.append("hierarchy ladder: unseen superclass shares are not strictly "
                            "increasing (level 0 first)")
    elif not is_strictly_increasing(s.distance for s in sf.ladder):
        problems.append("ladder distances are not strictly increasing (easiest split first)")
    if features is not None:
        problems.extend(_verify_distances(sf, manifest, features, rtol))
    return problems


def _verify_split(s: Split, counts: Mapping[str, int], label_of: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    where = f"split {s.id}"
    missing = [c for c in (*s.train, *s.test, *s.removed) if c not in counts]
    if missing:
        out.append(
            f"{where}: {len(missing)} class(es) not in the dataset, e.g. {short(missing[0])}"
        )
    unplaced = sorted(set(counts).difference(s.train, s.test, s.removed))
    if unplaced:
        out.append(
            f"{where}: {len(unplaced)} dataset class(es) in neither train, test nor removed, "
            f"e.g. {short(unplaced[0])}"
        )
    if (s.val_train or s.val) and set(s.val_train) | set(s.val) != set(s.train):
        out.append(f"{where}: val_train and val do not add up to the train classes")
    absent: list[str] = []
    wrong: list[str] = []
    for shots, eps in sorted(s.episodes.items()):
        expected = set(s.test).difference(s.episodes_skipped.get(shots, ()))
        for e, ep in enumerate(eps):
            out.extend(episode_problems(s.id, shots, e, ep, expected))
            for cls, paths in ep.items():
                for p in paths:
                    if p not in label_of:
                        absent.append(p)
                    elif label_of[p] != cls:
                        wrong.append(p)
    if absent:
        out.append(
            f"{where}: {len(absent)} episode image(s) not in the dataset, e.g. {short(absent[0])}"
        )
    if wrong:
        out.append(
            f"{where}: {len(wrong)} episode image(s) of another class, e.g. {short(wrong[0])}"
        )
    return out


def _verify_distances(sf: SplitFile, manifest: Any, features: Any, rtol: float) -> list[str]:
    from oodml.stats.class_stats import ClassStats
    from oodml.stats.modes import distance_within

    if features.fingerprint != manifest.fingerprint:
        return ["features were computed for another dataset version; recompute them"]
    if features.extractor != sf.extractor:
        return [
            f"features come from extractor {features.extractor!r}, split file used "
            f"{sf.extractor!r}; distances not checked"
        ]
    if features.precision != sf.precision:
        return [
            f"features were computed in {features.precision}, the split file's in {sf.precision}; "
            "distances not checked (extract with the file's precision: --precision bf16 for "
            "bf16, --amp on CUDA for fp16)"
        ]
    out: list[str] = []
    if sf.weights_sha256 is not None and features.weights_sha256 != sf.weights_sha256:
        out.append(
            f"extractor weights sha256 {str(features.weights_sha256)[:12]}... differ from "
            f"the split file's {sf.weights_sha256[:12]}...; distances not checked"
        )
        return out
    stats = ClassStats.from_features(features.features, features.labels)
    measure = None
    if sf.measure is not None:
        from oodml.errors import ConfigError
        from oodml.stats.measures import get_measure

        try:
            measure = get_measure(sf.measure_name)
        except ConfigError as exc:
            return [f"{exc}; distances not checked"]
        if any(sf.measure.get(k) != v for k, v in measure.record().items()):
            return [f"measure settings {sf.measure} differ from this oodml's "
                    f"{measure.record()}; distances not checked"]
    for s in sf.ladder:
        if not s.train or not s.test:
            continue
        if measure is not None:
            d = measure(stats, stats.indices(s.train), stats.indices(s.test), sf.distance_mode,
                        sf.params.get("eps")).value
        else:
            d = float(distance_within(stats, list(s.train), list(s.test),
                                      mode=sf.distance_mode, eps=sf.params.get("eps")))
        if not math.isclose(d, s.distance, rel_tol=rtol, abs_tol=1e-9):
            out.append(
                f"split {s.id}: recomputed distance {d:.6g} differs from stored {s.distance:.6g}"
            )
    return out
