"""Import and export the ooDML study's published split pickles without ever running code from them.

A study pickle is ``{split_id: {'train', 'test', 'fid', 'split_train', 'split_val',
'test_episodes': {shots: {episode: {class: [image names]}}}}}``. Loading uses a restricted
unpickler: the only globals it resolves are the numpy pieces that rebuild scalars and arrays
(``_reconstruct``, ``scalar``, ``ndarray``, ``dtype``) and a latin-1-only stand-in for
``_codecs.encode`` (protocol-2 pickles use it for raw bytes). Every other global is refused before
anything is called. The loaded object is then checked to contain only dicts, lists, tuples, str,
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
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from oodml.data.manifest import path_problem
from oodml.errors import SplitFileError
from oodml.fileio import atomic_write_bytes
from oodml.splits.splitfile import Split, SplitFile

PROCEDURE = "oodml-published"
_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_ALLOWED_KINDS = "Ufiu"

try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _multiarray


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedGlobal("_codecs.encode is only allowed for latin-1 text")
    return text.encode("latin1")


class SafeUnpickler(pickle.Unpickler):
    """Resolves only the globals needed to rebuild numpy string/number scalars and arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _NUMPY_MODULES and name in ("_reconstruct", "scalar"):
            return getattr(_multiarray, name)
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module == "_codecs" and name == "encode":
            return _latin1_encode
        raise RefusedGlobal(f"global '{module}.{name}' is not allowed")

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedGlobal("persistent ids are not allowed")


def safe_loads(data: bytes, name: str = "<pickle>") -> Any:
    """Unpickle with SafeUnpickler, then check and convert to plain Python containers."""
    try:
        obj = SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except RefusedGlobal as exc:
        raise SplitFileError(
            f"{name}: refused to load ({exc}); only plain data and numpy arrays are accepted"
        ) from None
    except Exception as exc:
        kind = type(exc).__name__
        raise SplitFileError(f"{name}: not a readable pickle ({kind}: {exc})") from None
    return plain(obj, name)


def plain(obj: Any, where: str) -> Any:
    """Recursively check the allowed types and turn numpy values into Python ones."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise SplitFileError(f"{where}: numpy array of dtype {obj.dtype} is not allowed")
        return obj.tolist()
    if isinstance(obj, np.generic):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise SplitFileError(f"{where}: numpy value of dtype {obj.dtype} is not allowed")
        return obj.item()
    if type(obj) in (str, int, float):
        return obj
    if type(obj) is dict:
        out = {}
        for k, v in obj.items():
            key = plain(k, f"{where} key")
            if not isinstance(key, (str, int)):
                raise SplitFileError(f"{where}: dictionary key {key!r} is not a string or integer")
            out[key] = plain(v, f"{where}[{key!r}]")
        return out
    if type(obj) in (list, tuple):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise SplitFileError(f"{where}: value of type {type(obj).__name__} is not allowed")


def _need(d: Any, key: str, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise SplitFileError(f"{where}: missing key {key!r}; this is not an ooDML split pickle")
    return d[key]


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SplitFileError(f"{where}: must be a list of class names")
    return tuple(value)


class _PathMapper:
    """Maps image names from a pickle to paths relative to the dataset root."""

    def __init__(self, manifest: Any | None) -> None:
        self.manifest = manifest
        self.by_name: dict[tuple[str, str], list[str]] = {}
        self.paths: set[str] = set()
        if manifest is not None:
            self.paths = set(manifest.paths)
            for cls, path in zip(manifest.labels, manifest.paths, strict=True):
                self.by_name.setdefault((cls, path.rsplit("/", 1)[-1]), []).append(path)

    def __call__(self, cls: str, name: str, where: str) -> str:
        if self.manifest is not None and name not in self.paths:
            found = self.by_name.get((cls, name.replace("\\", "/").rsplit("/", 1)[-1]), [])
            if len(found) != 1:
                what = "is not an image" if not found else "matches several images"
                raise SplitFileError(
                    f"{where}: {name!r} {what} of class {cls!r} in {self.manifest.root}; "
                    "check --dataset and --root"
                )
            name = found[0]
        why = path_problem(name)
        if why:
            raise SplitFileError(f"{where}: image path {name!r:.80} {why}")
        return name


def _episodes(
    raw: Any, test: tuple[str, ...], mapper: _PathMapper, where: str
) -> dict[int, list[dict[str, list[str]]]]:
    if not isinstance(raw, dict):
        raise SplitFileError(f"{where}: must map shot counts to episodes")
    out: dict[int, list[dict[str, list[str]]]] = {}
    for shots in sorted(raw, key=_order):
        eps = raw[shots]
        ew = f"{where}[{shots!r}]"
        if not isinstance(eps, dict):
            raise SplitFileError(f"{ew}: must map episode numbers to support sets")
        out[_as_int(shots, ew)] = [
            _support(eps[e], test, mapper, f"{ew}[{e!r}]") for e in sorted(eps, key=_order)
        ]
    return out


def _support(
    ep: Any, test: tuple[str, ...], mapper: _PathMapper, where: str
) -> dict[str, list[str]]:
    if not isinstance(ep, dict):
        raise SplitFileError(f"{where}: must map class names to image names")
    out: dict[str, list[str]] = {}
    for cls, names in ep.items():
        if cls not in test:
            raise SplitFileError(f"{where}: class {cls!r} is not a test class of this split")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SplitFileError(f"{where}[{cls!r}]: must be a list of image names")
        out[cls] = [mapper(cls, n, f"{where}[{cls!r}]") for n in names]
    return out


def _order(key: Any) -> tuple[int, Any]:
    return (0, key) if isinstance(key, int) else (1, str(key))


def _as_int(value: Any, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SplitFileError(f"{where}: key {value!r} is not an integer") from None


def from_oodml(
    obj: Any, *, source_sha256: str, name: str, dataset_name: str = "unknown", manifest: Any = None
) -> SplitFile:
    """Build a SplitFile from an already safely loaded study pickle."""
    if not isinstance(obj, dict) or not obj:
        raise SplitFileError(f"{name}: expected a non-empty dict of split id -> split")
    keys = sorted(obj, key=_order)
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
        if not isinstance(fid, (int, float)):
            raise SplitFileError(f"{where} 'fid': must be a number, got {fid!r:.40}")
        if all_classes is not None:
            unknown = sorted(set(train + test).difference(all_classes))
            if unknown:
                raise SplitFileError(
                    f"{where}: class {unknown[0]!r} is not in dataset {dataset_name!r} at "
                    f"{manifest.root}; check --dataset and --root"
                )
        removed = tuple(sorted(all_classes.difference(train, test))) if all_classes else ()
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
                episodes=_episodes(d.get("test_episodes", {}), test, mapper, f"{where} episodes"),
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
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise SplitFileError(f"cannot read ooDML pickle {p}: {exc.strerror}") from None
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
    return atomic_write_bytes(path, data)
