"""Hostile ooDML pickles and split files (issue 11): allocation bombs, huge integers, deep
nesting, self-reference, non-finite numbers; and ``verify`` listing every problem."""

from __future__ import annotations

import json
import pickle
import pickletools
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from oodml.errors import SplitFileError
from oodml.splits.oodml_pickle import import_oodml, safe_loads
from oodml.splits.splitfile import (
    Split,
    SplitFile,
    load_for_verify,
    load_splitfile,
    save_splitfile,
    verify,
)

NUMPY = "numpy._core.multiarray" if np.__version__ >= "2" else "numpy.core.multiarray"


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def short_str(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def array_bomb(n: int, with_state: bool) -> bytes:
    """``_reconstruct(ndarray, (n,), 'b')`` (+ the array state claiming n float64 values)."""
    out = b"\x80\x02" + glob(NUMPY, "_reconstruct") + glob("numpy", "ndarray")
    out += b"J" + struct.pack("<i", n) + b"\x85" + b"C\x01b" + b"\x87R"
    if with_state:
        out += b"(K\x01J" + struct.pack("<i", n) + b"\x85"
        out += glob("numpy", "dtype") + short_str("f8") + b"\x89\x88\x87R"
        out += b"(K\x03" + short_str("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        out += b"\x89C\x00tb"
    return out + b"."


def refused_without_allocating(data: bytes, name: str) -> str:
    """A well-formed pickle that safe_loads refuses in one line naming ``name``, peaking
    under 5 MiB of Python allocations; returns the message."""
    pickletools.dis(data, out=open("/dev/null", "w"))
    tracemalloc.start()
    try:
        with pytest.raises(SplitFileError) as err:
            safe_loads(data, name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20, peak
    text = str(err.value)
    assert "\n" not in text and text.startswith(name)
    return text


@pytest.mark.parametrize("with_state", [False, True])
def test_array_shape_bomb_is_refused_without_allocating(with_state):
    data = array_bomb(400_000_000, with_state)
    assert len(data) <= 160
    refused_without_allocating(data, "bomb.pkl")


def test_calling_numpy_ndarray_directly_is_refused_without_allocating():
    """``numpy.ndarray((n,))`` from a 30-byte pickle would allocate n float64 values and
    ``tolist`` them: the global resolves to a marker that only ``_reconstruct`` accepts."""
    data = b"\x80\x02" + glob("numpy", "ndarray") + b"J" + struct.pack("<i", 400_000_000)
    data += b"\x85\x85R."
    assert len(data) <= 40
    assert "calling numpy.ndarray is not allowed" in refused_without_allocating(data, "direct.pkl")


def test_a_genuine_numpy_pickle_still_loads():
    obj = {
        1: {"train": np.array(["a", "bb"]), "fid": np.float64(1.5), "n": np.int64(3)},
        2: {"ids": np.arange(6, dtype=np.int32).reshape(2, 3), "big": np.array([2.0, 3.5])},
    }
    for protocol in (2, 4):
        got = safe_loads(pickle.dumps(obj, protocol=protocol))
        assert got == {
            1: {"train": ["a", "bb"], "fid": 1.5, "n": 3},
            2: {"ids": [[0, 1, 2], [3, 4, 5]], "big": [2.0, 3.5]},
        }


def test_huge_integer_key_is_a_one_line_error():
    data = pickle.dumps({10**5000: {"train": ["a"]}}, protocol=4)
    with pytest.raises(SplitFileError, match="integer with .* bits") as err:
        safe_loads(data, "ints.pkl")
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_huge_integer_in_protocol_0_is_a_one_line_error():
    data = b"(dL" + b"9" * 5000 + b"L\n(dp0\ns."
    with pytest.raises(SplitFileError) as err:
        safe_loads(data, "p0.pkl")
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_deep_nesting_is_a_one_line_error():
    depth = 200_000
    data = b"\x80\x04" + b"]" * depth + b"a" * (depth - 1) + b"."
    with pytest.raises(SplitFileError, match="nested more than") as err:
        safe_loads(data, "deep.pkl")
    assert "\n" not in str(err.value)


def test_self_reference_is_a_one_line_error(tmp_path):
    loop: list = []
    loop.append(loop)
    path = tmp_path / "self.pkl"
    path.write_bytes(pickle.dumps({1: {"train": loop}}, protocol=4))
    with pytest.raises(SplitFileError, match="refers to itself") as err:
        import_oodml(path)
    assert "\n" not in str(err.value)


def test_shared_containers_cannot_multiply_the_work():
    x: list = ["a"]
    for _ in range(60):
        x = [x, x]
    data = pickle.dumps(x, protocol=4)
    assert len(data) < 2000
    with pytest.raises(SplitFileError) as err:
        safe_loads(data, "dag.pkl")
    assert "\n" not in str(err.value)


def make_splitfile(tmp_path: Path) -> Path:
    ladder = [
        Split(id=1, distance=1.0, is_start=True, train=("a", "b"), test=("c", "d"),
              episodes={1: [{"c": ["c/1.png"], "d": ["d/1.png"]}]}),
        Split(id=2, distance=2.0, is_start=False, train=("a", "c"), test=("b", "d")),
    ]
    sf = SplitFile(
        dataset_name="imagefolder", dataset_fingerprint=None,
        class_counts={"a": 2, "b": 2, "c": 2, "d": 2}, extractor="unknown",
        weights_sha256=None, distance_mode="class-means", procedure="test", params={},
        seed=0, ladder=ladder,
    )
    return save_splitfile(sf, tmp_path / "ladder.json")


def edit(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc, indent=1))


def test_distance_1e999_is_a_one_line_error(tmp_path):
    path = make_splitfile(tmp_path)
    path.write_text(path.read_text().replace('"distance": 2.0', '"distance": 1e999'))
    with pytest.raises(SplitFileError, match="out of range") as err:
        load_splitfile(path)
    assert "\n" not in str(err.value)
    with pytest.raises(SplitFileError, match="out of range"):
        load_for_verify(path)


def test_huge_integer_distance_is_a_one_line_error(tmp_path):
    path = make_splitfile(tmp_path)
    path.write_text(path.read_text().replace('"distance": 2.0', '"distance": 1' + "0" * 400))
    with pytest.raises(SplitFileError, match="out of range") as err:
        load_splitfile(path, check_sha=False)
    assert "\n" not in str(err.value)


def test_deeply_nested_split_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(SplitFileError, match="nested too deeply") as err:
        load_splitfile(path)
    assert "\n" not in str(err.value)


class FakeManifest:
    """The three manifest attributes ``verify`` reads, for four classes of two images."""

    fingerprint = "f" * 64
    root = Path("/data")
    class_counts = {"a": 2, "b": 2, "c": 2, "d": 2}
    paths = tuple(f"{c}/{i}.png" for c in "abcd" for i in (1, 2))
    labels = tuple(c for c in "abcd" for _ in (1, 2))


def test_verify_lists_structural_problems_and_the_checksum(tmp_path):
    path = make_splitfile(tmp_path)

    def damage(doc):
        s1, s2 = doc["ladder"]
        s1["test"].append("a")  # a class on both sides
        s2["train"].append("a")  # a duplicated class
        s1["episodes"]["1"][0]["c"] = ["../../etc/passwd"]  # a bad path

    edit(path, damage)
    with pytest.raises(SplitFileError, match="both train and test"):
        load_splitfile(path, check_sha=False)
    sf, problems = load_for_verify(path)
    problems += verify(sf, FakeManifest(), None)
    text = "\n".join(problems)
    assert "checksum mismatch" in text
    assert "ladder[0] puts class 'a' in both train and test" in text
    assert "ladder[1].train lists class 'a' twice" in text
    assert "image path '../../etc/passwd'" in text
    assert "1-shot episode 0 has 1 support set(s) of the wrong size" in text
    assert all("\n" not in p for p in problems)


def test_sound_file_has_no_problems_and_empty_ladder_is_one(tmp_path):
    path = make_splitfile(tmp_path)
    sf, problems = load_for_verify(path)
    assert problems == [] and verify(sf, FakeManifest(), None) == []
    edit(path, lambda doc: doc.update(ladder=[]))
    sf, problems = load_for_verify(path)
    problems += verify(sf, FakeManifest(), None)
    assert any("checksum mismatch" in p for p in problems)
    assert "the ladder holds no splits" in problems


def test_an_empty_ladder_with_a_valid_checksum_is_refused_on_load(tmp_path):
    """show, plot, rescore and evaluate load with load_splitfile: a file with nothing to
    evaluate is a one-line error there (verify still lists it among its problems)."""
    from dataclasses import replace

    path = make_splitfile(tmp_path)
    empty = tmp_path / "empty.json"
    save_splitfile(replace(load_splitfile(path), ladder=()), empty)
    with pytest.raises(SplitFileError, match="holds no splits") as err:
        load_splitfile(empty)
    assert "\n" not in str(err.value) and str(empty) in str(err.value)
    sf, problems = load_for_verify(empty)
    assert problems == [] and "the ladder holds no splits" in verify(sf, FakeManifest(), None)
