"""Import and export the ooDML study's published split pickles without ever running code from them.

A study pickle is ``{split_id: {'train', 'test', 'fid', 'split_train', 'split_val',
'test_episodes': {shots: {episode: {class: [image names]}}}}}``. Loading uses a restricted
unpickler: the only globals it resolves are the numpy pieces that rebuild scalars and arrays
(``_reconstruct``, ``scalar``, ``ndarray``, ``dtype``), each replaced by a stand-in that checks
sizes before numpy allocates anything, and a latin-1-only stand-in for ``_codecs.encode``
(protocol-2 pickles use it for raw bytes). Every other global is refused before anything is
called. The loaded object is then checked to contain only dicts, lists, tuples, str,
int, float and numpy str/int/float scalars and arrays.

Metadata the pickles lack: without a manifest the split file gets dataset fingerprint, class
counts, extractor weights and seed ``null`` and extractor ``"unknown"``; removed classes and the
start marker stay empty. With a manifest the fingerprint and counts are filled, removed = every
dataset class in neither train nor test, the split equal to the dataset's default split is marked
as start, and bare image file names are mapped to paths relative to the dataset root (by class and
file name).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from oodml.data.manifest import path_problem
from oodml.errors import SplitFileError, short
from oodml.fileio import atomic_write_bytes, read_bytes
from oodml.splits.splitfile import Split, SplitFile, episode_problems

PROCEDURE = "oodml-published"
_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_ALLOWED_KINDS = "Ufiu"

class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedGlobal("_codecs.encode is only allowed for latin-1 text")
    return text.encode("latin1")


MAX_PICKLE_BYTES = 2**30
"""Largest study pickle read (the study's own are a few MB)."""

MAX_ITEMSIZE = 2**20
"""Largest numpy element (bytes) a pickle may declare: no class or image name comes near it."""

MAX_DEPTH = 64
"""Deepest container nesting accepted (a study pickle nests 6 deep)."""

MAX_INT_BITS = 63
"""Integers (split ids, shot counts, distances) must fit in a signed 64-bit integer."""


class _DtypeSpec:
    """Stand-in for ``numpy.dtype(obj, align, copy)`` plus its ``__setstate__``: records the
    arguments and builds a real dtype only once both are checked (a plain little- or big-endian
    str, int, uint or float type, no fields, no sub-array, element at most MAX_ITEMSIZE)."""

    def __init__(self, obj: Any = None, align: Any = False, copy: Any = False) -> None:
        if not isinstance(obj, str) or len(obj) > 16:
            raise RefusedGlobal(f"numpy dtype {obj!r:.40} is not allowed")
        try:
            base = np.dtype(obj)
        except TypeError:
            raise RefusedGlobal(f"numpy dtype {obj!r:.40} is not allowed") from None
        if base.kind not in _ALLOWED_KINDS or base.fields is not None or base.subdtype:
            raise RefusedGlobal(f"numpy dtype {obj!r:.40} is not allowed")
        self.dtype = base

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (8, 9):
            raise RefusedGlobal("numpy dtype state is malformed")
        endian, subarray, names, fields, elsize = state[1:6]
        if endian not in ("<", ">", "|", "=") or (subarray, names, fields) != (None, None, None):
            raise RefusedGlobal("numpy dtype with fields or sub-arrays is not allowed")
        if type(elsize) is not int or elsize > MAX_ITEMSIZE:
            raise RefusedGlobal(f"numpy dtype element size {elsize!r:.40} is not allowed")
        dt = self.dtype
        if dt.kind == "U" and elsize > 0:
            dt = np.dtype(f"U{elsize // 4}")
        self.dtype = dt.newbyteorder(endian) if endian in "<>" and dt.itemsize > 1 else dt

    def real(self) -> np.dtype:
        if self.dtype.itemsize < 1 or self.dtype.itemsize > MAX_ITEMSIZE:
            raise RefusedGlobal(f"numpy dtype {self.dtype} has no usable element size")
        return self.dtype


def _raw_bytes(raw: Any) -> bytes:
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        return raw.encode("latin1")
    raise RefusedGlobal("numpy array data is not raw bytes")


class _NdarrayMarker:
    """Stand-in for the global ``numpy.ndarray``: a study pickle only passes it to
    ``_reconstruct``; calling it (``ndarray(shape)`` allocates the declared shape from a few
    bytes) is refused."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RefusedGlobal("calling numpy.ndarray is not allowed")

    def __reduce__(self) -> Any:
        raise RefusedGlobal("numpy.ndarray marker cannot be pickled")


_NDARRAY = _NdarrayMarker()


class _ArrayBuilder:
    """Stand-in for ``numpy.core.multiarray._reconstruct(ndarray, shape, dtype)`` plus the
    array's ``__setstate__``. numpy would allocate the declared shape at once (a 75-byte pickle
    can declare 4e8 elements); here the state is checked first: the data must be exactly
    ``prod(shape) * itemsize`` bytes carried by the pickle itself, so an array never takes more
    memory than the pickle file."""

    def __init__(self, subtype: Any = None, shape: Any = None, dtype: Any = None) -> None:
        if subtype is not _NDARRAY:
            raise RefusedGlobal("_reconstruct is only allowed for numpy.ndarray")
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise RefusedGlobal("numpy array state is malformed")
        _, shape, spec, fortran, raw = state
        if not isinstance(spec, _DtypeSpec):
            raise RefusedGlobal("numpy array without an allowed dtype")
        if not isinstance(shape, tuple) or not all(
            type(n) is int and 0 <= n.bit_length() <= MAX_INT_BITS for n in shape
        ):
            raise RefusedGlobal(f"numpy array shape {shape!r:.60} is not allowed")
        dtype = spec.real()
        count = 1
        for n in shape:
            count *= n
        data = _raw_bytes(raw)
        if count * dtype.itemsize != len(data):
            raise RefusedGlobal(
                f"numpy array of shape {shape!r:.60} and dtype {dtype} needs "
                f"{count * dtype.itemsize} bytes but the pickle carries {len(data)}"
            )
        order = "F" if fortran else "C"
        self.array = np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy()


def _scalar(spec: Any, raw: Any = None) -> np.generic:
    """Stand-in for ``numpy.core.multiarray.scalar(dtype, bytes)`` with the sizes checked."""
    if not isinstance(spec, _DtypeSpec):
        raise RefusedGlobal("numpy scalar without an allowed dtype")
    dtype = spec.real()
    data = _raw_bytes(raw)
    if len(data) != dtype.itemsize:
        raise RefusedGlobal(f"numpy scalar of dtype {dtype} with {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype)[0]


class SafeUnpickler(pickle.Unpickler):
    """Resolves only stand-ins that rebuild numpy string/number scalars and arrays after
    checking their sizes (see ``_ArrayBuilder``); nothing numpy allocates is larger than the
    bytes the pickle carries."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _NUMPY_MODULES and name == "_reconstruct":
            return _ArrayBuilder
        if module in _NUMPY_MODULES and name == "scalar":
            return _scalar
        if module == "numpy" and name == "ndarray":
            return _NDARRAY
        if module == "numpy" and name == "dtype":
            return _DtypeSpec
        if module == "_codecs" and name == "encode":
            return _latin1_encode
        raise RefusedGlobal(f"global '{module}.{name}' is not allowed")

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedGlobal("persistent ids are not allowed")


def safe_loads(data: bytes, name: str = "<pickle>") -> Any:
    """Unpickle with SafeUnpickler, then check and convert to plain Python containers.

    Bounds: arrays no larger than the bytes carried (``_ArrayBuilder``), nesting at most
    MAX_DEPTH (which also stops self-references), integers within 64 bits, and at most
    ``16 * len(data) + 10**6`` values visited (shared sub-containers cannot blow up)."""
    try:
        obj = SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except RefusedGlobal as exc:
        raise SplitFileError(
            f"{name}: refused to load ({exc}); only plain data and numpy arrays are accepted"
        ) from None
    except RecursionError:
        raise SplitFileError(f"{name}: refused to load (nested too deeply)") from None
    except MemoryError:
        raise SplitFileError(f"{name}: refused to load (out of memory)") from None
    except Exception as exc:
        kind = type(exc).__name__
        raise SplitFileError(f"{name}: not a readable pickle ({kind}: {_short(exc)})") from None
    budget = [16 * len(data) + 10**6]
    return plain(obj, name, budget=budget)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:200] + "..."


def plain(obj: Any, where: str, depth: int = 0, budget: list[int] | None = None) -> Any:
    """Recursively check the allowed types and turn numpy values into Python ones."""
    if depth > MAX_DEPTH:
        raise SplitFileError(
            f"{name_of(where)}: nested more than {MAX_DEPTH} levels deep (or refers to itself); "
            "this is not an ooDML split pickle"
        )
    if budget is not None:
        budget[0] -= 1
        if budget[0] < 0:
            raise SplitFileError(
                f"{name_of(where)}: holds far more values than its size allows (shared "
                "containers repeated); this is not an ooDML split pickle"
            )
    if isinstance(obj, _ArrayBuilder):
        if obj.array is None:
            raise SplitFileError(f"{where}: numpy array without data is not allowed")
        obj = obj.array
    if isinstance(obj, np.ndarray):
        if budget is not None:
            budget[0] -= obj.size
            if budget[0] < 0:
                raise SplitFileError(f"{name_of(where)}: arrays hold too many values")
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise SplitFileError(f"{where}: numpy array of dtype {obj.dtype} is not allowed")
        return obj.tolist()
    if isinstance(obj, np.generic):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise SplitFileError(f"{where}: numpy value of dtype {obj.dtype} is not allowed")
        return obj.item()
    if type(obj) is int:
        if obj.bit_length() > MAX_INT_BITS:
            raise SplitFileError(
                f"{where}: integer with {obj.bit_length()} bits is not allowed (at most 64)"
            )
        return obj
    if type(obj) in (str, float):
        return obj
    if type(obj) is dict:
        out = {}
        for k, v in obj.items():
            key = plain(k, f"{where} key", depth + 1, budget)
            if not isinstance(key, (str, int)):
                raise SplitFileError(
                    f"{where}: dictionary key {key!r:.40} is not a string or integer"
                )
            out[key] = plain(v, f"{where}[{key!r:.40}]", depth + 1, budget)
        return out
    if type(obj) in (list, tuple):
        return [plain(v, f"{where}[{i}]", depth + 1, budget) for i, v in enumerate(obj)]
    raise SplitFileError(f"{where}: value of type {type(obj).__name__} is not allowed")


def name_of(where: str) -> str:
    """The file part of a location such as ``'f.pkl[1]['train'][0]'`` (keeps messages short)."""
    return where.split("[", 1)[0].split(" key", 1)[0]


def _need(d: Any, key: str, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise SplitFileError(f"{where}: missing key {key!r}; this is not an ooDML split pickle")
    return d[key]


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SplitFileError(f"{where}: must be a list of class names")
    return tuple(value)


class _PathMapper:
    """Maps image names from a pickle to paths relative to the dataset root; with a manifest,
    an image must exist and be of the class it supports."""

    def __init__(self, manifest: Any | None) -> None:
        self.manifest = manifest
        self.by_name: dict[tuple[str, str], list[str]] = {}
        self.label_of: dict[str, str] = {}
        if manifest is not None:
            self.label_of = dict(zip(manifest.paths, manifest.labels, strict=True))
            for cls, path in zip(manifest.labels, manifest.paths, strict=True):
                self.by_name.setdefault((cls, path.rsplit("/", 1)[-1]), []).append(path)

    def __call__(self, cls: str, name: str, where: str) -> str:
        if self.manifest is not None and name not in self.label_of:
            found = self.by_name.get((cls, name.replace("\\", "/").rsplit("/", 1)[-1]), [])
            if len(found) != 1:
                what = "is not an image" if not found else "matches several images"
                raise SplitFileError(
                    f"{where}: {short(name)} {what} of class {short(cls)} in "
                    f"{self.manifest.root}; check --dataset and --root"
                )
            name = found[0]
        if self.manifest is not None and self.label_of[name] != cls:
            raise SplitFileError(
                f"{where}: support image {short(name)} of class {short(cls)} is an image of "
                f"class {short(self.label_of[name])} in {self.manifest.root}; fix the pickle"
            )
        why = path_problem(name)
        if why:
            raise SplitFileError(f"{where}: image path {short(name)} {why}")
        return name


def _episodes(
    raw: Any, test: tuple[str, ...], mapper: _PathMapper, where: str, split_id: int, name: str
) -> tuple[dict[int, list[dict[str, list[str]]]], dict[int, tuple[str, ...]]]:
    """Episodes by shot count, and the test classes no episode of a shot count covers (the
    split file's ``episodes_skipped``: a study leaves out classes too small for k shots). Every
    episode must then cover the other test classes with exactly k support images each."""
    if not isinstance(raw, dict):
        raise SplitFileError(f"{where}: must map shot counts to episodes")
    out: dict[int, list[dict[str, list[str]]]] = {}
    skipped: dict[int, tuple[str, ...]] = {}
    for key, shots in _keys(raw, where, "shot count"):
        eps = raw[key]
        ew = f"{where}[{key!r}]"
        if not isinstance(eps, dict):
            raise SplitFileError(f"{ew}: must map episode numbers to support sets")
        episodes = [
            _support(eps[e], test, mapper, f"{ew}[{e!r}]") for e, _ in _keys(eps, ew, "episode")
        ]
        if shots <= 0:
            raise SplitFileError(f"{ew}: shot count {shots} must be positive")
        covered = set().union(*episodes) if episodes else set()
        left_out = tuple(c for c in test if c not in covered)
        if left_out and episodes:
            skipped[shots] = left_out
        expected = set(test).difference(left_out)
        for e, ep in enumerate(episodes):
            problems = episode_problems(split_id, shots, e, ep, expected)
            if problems:
                raise SplitFileError(f"{name}: {problems[0]}; fix the pickle")
        out[shots] = episodes
    return out, skipped


def _support(
    ep: Any, test: tuple[str, ...], mapper: _PathMapper, where: str
) -> dict[str, list[str]]:
    if not isinstance(ep, dict):
        raise SplitFileError(f"{where}: must map class names to image names")
    out: dict[str, list[str]] = {}
    for cls, names in ep.items():
        if cls not in test:
            raise SplitFileError(
                f"{where}: class {short(cls)} is not a test class of this split"
            )
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SplitFileError(f"{where}[{short(cls)}]: must be a list of image names")
        out[cls] = [mapper(cls, n, f"{where}[{short(cls)}]") for n in names]
    return out


def _keys(d: dict, where: str, what: str) -> list[tuple[Any, int]]:
    """(key, integer) for every key of ``d`` (ints, or strings holding one), in integer order;
    two keys naming one integer (``1`` and ``'1'``) are refused: one of them would be lost or
    counted twice."""
    seen: dict[int, Any] = {}
    for key in d:
        n = _as_int(key, where)
        if n in seen:
            raise SplitFileError(
                f"{where}: keys {short(seen[n])} and {short(key)} both name {what} {n}; "
                "keep one"
            )
        seen[n] = key
    return sorted(((k, n) for n, k in seen.items()), key=lambda kn: kn[1])


def _as_int(value: Any, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SplitFileError(f"{where}: key {short(value)} is not an integer") from None


def from_oodml(
    obj: Any, *, source_sha256: str, name: str, dataset_name: str = "unknown", manifest: Any = None
) -> SplitFile:
    """Build a SplitFile from an already safely loaded study pickle."""
    if not isinstance(obj, dict) or not obj:
        raise SplitFileError(f"{name}: expected a non-empty dict of split id -> split")
    keys = [key for key, _ in _keys(obj, name, "split")]
    mapper = _PathMapper(manifest)
    all_classes = set(manifest.classes) if manifest is not None else None
    default = (
        (frozenset(manifest.default_train), frozenset(manifest.default_test))
        if manifest is not None and manifest.default_train
        else None
    )
    ladder: list[Split] = []
    for i, key in enumerate(keys, start=1):
        d = obj[key]
        where = f"{name} split {key!r}"
        train = _names(_need(d, "train", where), f"{where} 'train'")
        test = _names(_need(d, "test", where), f"{where} 'test'")
        fid = _need(d, "fid", where)
        if not isinstance(fid, (int, float)) or isinstance(fid, bool):
            raise SplitFileError(f"{where} 'fid': must be a number, got {fid!r:.40}")
        if not math.isfinite(fid) or fid < 0:
            raise SplitFileError(
                f"{where} 'fid': distance {fid!r:.40} must be a finite number >= 0"
            )
        if all_classes is not None:
            unknown = sorted(set(train + test).difference(all_classes))
            if unknown:
                raise SplitFileError(
                    f"{where}: class {short(unknown[0])} is not in dataset "
                    f"{short(dataset_name)} at "
                    f"{manifest.root}; check --dataset and --root"
                )
        removed = tuple(sorted(all_classes.difference(train, test))) if all_classes else ()
        episodes, skipped = _episodes(
            d.get("test_episodes", {}), test, mapper, f"{where} episodes", i, name
        )
        ladder.append(
            Split(
                id=i,
                distance=float(fid),
                is_start=default is not None and default == (frozenset(train), frozenset(test)),
                train=train,
                test=test,
                removed=removed,
                val_train=_names(d.get("split_train", []), f"{where} 'split_train'"),
                val=_names(d.get("split_val", []), f"{where} 'split_val'"),
                episodes=episodes,
                episodes_skipped=skipped,
            )
        )
    return SplitFile(
        dataset_name=dataset_name,
        dataset_fingerprint=manifest.fingerprint if manifest is not None else None,
        class_counts=dict(manifest.class_counts) if manifest is not None else None,
        extractor="unknown",
        weights_sha256=None,
        distance_mode="class-means",
        procedure=PROCEDURE,
        params={"source_sha256": source_sha256},
        seed=None,
        ladder=ladder,
    )


def import_oodml(
    path: str | os.PathLike, *, dataset_name: str | None = None, manifest: Any = None
) -> SplitFile:
    """Read a study pickle safely and convert it; see the module docstring for metadata."""
    p = Path(path)
    data = read_bytes(p, "ooDML pickle", MAX_PICKLE_BYTES, error=SplitFileError)
    obj = safe_loads(data, str(p))
    name = dataset_name or (manifest.name if manifest is not None else "unknown")
    return from_oodml(
        obj,
        source_sha256=hashlib.sha256(data).hexdigest(),
        name=str(p),
        dataset_name=name,
        manifest=manifest,
    )


def to_oodml(sf: SplitFile, *, basenames: bool = False) -> dict[int, dict[str, Any]]:
    """The study's dict layout; ``basenames`` writes bare file names instead of relative paths."""

    def image(path: str) -> str:
        return path.rsplit("/", 1)[-1] if basenames else path

    return {
        s.id: {
            "train": list(s.train),
            "test": list(s.test),
            "fid": float(s.distance),
            "split_train": list(s.val_train),
            "split_val": list(s.val),
            "test_episodes": {
                shots: {
                    e: {cls: [image(p) for p in paths] for cls, paths in ep.items()}
                    for e, ep in enumerate(eps)
                }
                for shots, eps in sorted(s.episodes.items())
            },
        }
        for s in sf.ladder
    }


def export_oodml(sf: SplitFile, path: str | os.PathLike, *, basenames: bool = False) -> Path:
    """Write the study's pickle layout (plain Python types only, protocol 4) atomically."""
    data = pickle.dumps(to_oodml(sf, basenames=basenames), protocol=4)
    return atomic_write_bytes(path, data, what="pickle")
