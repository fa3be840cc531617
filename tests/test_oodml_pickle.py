"""ooDML study pickles: refused when they would run code, accepted with numpy data, round trip."""

from __future__ import annotations

import os
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_splitfile import make_splitfile

from oodml.data import load_dataset
from oodml.data.manifest import Manifest
from oodml.errors import SplitFileError
from oodml.splits.oodml_pickle import export_oodml, import_oodml, safe_loads, to_oodml
from oodml.splits.splitfile import load_splitfile, save_splitfile


class _Boom:
    """Unpickling this would create a marker file through os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def manifest(omniglot_zip: Path) -> Manifest:
    return load_dataset("omniglot", omniglot_zip)


def test_code_in_pickle_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = {1: {"train": ["a"], "test": ["b"], "fid": 1.0, "extra": _Boom(marker)}}
    for protocol in (0, 2, 4, 5):
        p = tmp_path / f"evil{protocol}.pkl"
        p.write_bytes(pickle.dumps(payload, protocol=protocol))
        with pytest.raises(SplitFileError, match=r"refused to load .*system.* is not allowed"):
            import_oodml(p)
        assert not marker.exists()
    # sanity: the same bytes really would run the command under a plain unpickler
    pickle.loads(pickle.dumps(_Boom(marker)))
    assert marker.exists()


@pytest.mark.parametrize(
    "bad",
    [
        {1: {1, 2}},
        {1: np.array([object()], dtype=object)},
        {1: np.array([b"x"])},
        {1: bytearray(b"x")},
        {1: complex(1, 2)},
    ],
)
def test_disallowed_types_are_refused(bad) -> None:
    with pytest.raises(SplitFileError, match="not allowed|not a readable|refused"):
        safe_loads(pickle.dumps(bad, protocol=4), "x.pkl")


def test_numpy_strings_and_floats_are_accepted() -> None:
    obj = {
        np.int64(3): {
            "train": np.array(["c1", "c2"]),
            "test": [np.str_("c3")],
            "fid": np.float64(12.5),
            "w": np.linspace(0, 1, 3, dtype=np.float32),
        }
    }
    for protocol in (2, 4):
        got = safe_loads(pickle.dumps(obj, protocol=protocol))
        assert got == {3: {"train": ["c1", "c2"], "test": ["c3"], "fid": 12.5, "w": [0, 0.5, 1]}}
        assert type(got[3]["fid"]) is float and type(got[3]["train"][0]) is str


def test_round_trip_keeps_classes_distances_episodes(manifest: Manifest, tmp_path: Path) -> None:
    sf = make_splitfile(manifest)
    pkl = export_oodml(sf, tmp_path / "s.pkl")
    raw = pickle.loads(pkl.read_bytes())
    assert sorted(raw) == [1, 2, 3] and sorted(raw[1]["test_episodes"]) == [2, 5, 10]
    back = import_oodml(pkl)
    assert back.dataset_fingerprint is None and back.extractor == "unknown"
    for a, b in zip(sf.ladder, back.ladder, strict=True):
        assert (a.train, a.test, a.distance) == (b.train, b.test, b.distance)
        assert (a.val_train, a.val, a.episodes) == (b.val_train, b.val, b.episodes)
    full = import_oodml(pkl, manifest=manifest)
    assert full.dataset_fingerprint == manifest.fingerprint
    assert [s.removed for s in full.ladder] == [s.removed for s in sf.ladder]
    assert [s.is_start for s in full.ladder] == [True, False, False]
    saved = save_splitfile(full, tmp_path / "s.json")
    assert load_splitfile(saved) == full


def test_bare_file_names_map_to_paths(manifest: Manifest, tmp_path: Path) -> None:
    sf = make_splitfile(manifest)
    pkl = export_oodml(sf, tmp_path / "bare.pkl", basenames=True)
    raw = pickle.loads(pkl.read_bytes())
    name = next(iter(raw[1]["test_episodes"][2][0].values()))[0]
    assert "/" not in name
    mapped = import_oodml(pkl, manifest=manifest)
    assert [s.episodes for s in mapped.ladder] == [s.episodes for s in sf.ladder]
    bad = dict(raw)
    bad[1] = dict(raw[1], test_episodes={2: {0: {sf.ladder[0].test[0]: ["nope.png"]}}})
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(bad))
    with pytest.raises(SplitFileError, match="'nope.png' is not an image of class"):
        import_oodml(tmp_path / "bad.pkl", manifest=manifest)


def test_structure_errors(manifest: Manifest, tmp_path: Path) -> None:
    good = to_oodml(make_splitfile(manifest))
    cases = {
        "nofid": ({1: {k: v for k, v in good[1].items() if k != "fid"}}, "missing key 'fid'"),
        "list": ([1, 2], "expected a non-empty dict"),
        "unknown": ({1: dict(good[1], train=["Klingon/character01"])}, "not in dataset"),
        "escape": (
            {1: dict(good[1], test_episodes={2: {0: {good[1]["test"][0]: ["../x.png"]}}})},
            "escape the dataset root",
        ),
    }
    for name, (obj, message) in cases.items():
        p = tmp_path / f"{name}.pkl"
        p.write_bytes(pickle.dumps(obj))
        with pytest.raises(SplitFileError, match=message):
            import_oodml(p, manifest=manifest if name == "unknown" else None)
    p = tmp_path / "junk.pkl"
    p.write_bytes(b"not a pickle at all")
    with pytest.raises(SplitFileError, match="not a readable pickle"):
        import_oodml(p)


def test_import_is_deterministic(manifest: Manifest, tmp_path: Path) -> None:
    pkl = export_oodml(make_splitfile(manifest), tmp_path / "d.pkl")
    a = save_splitfile(import_oodml(pkl, manifest=manifest), tmp_path / "a.json")
    b = save_splitfile(import_oodml(pkl, manifest=manifest), tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()
    other = replace(make_splitfile(manifest), seed=5)
    assert export_oodml(other, tmp_path / "e.pkl").read_bytes() == pkl.read_bytes()
