"""Class hierarchies: the loaders' superclasses, the --hierarchy CSV, tree distances and the
semantic shift of a split."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_data import make_class_tree, write_sop

from oodml.data import load_dataset
from oodml.data.hierarchy import Hierarchy, cars_make, hierarchy_of, read_hierarchy
from oodml.errors import DataError
from oodml.splits.semantic import semantic_shift


def test_omniglot_superclass_is_the_alphabet(omniglot_zip: Path) -> None:
    m = load_dataset("omniglot", omniglot_zip)
    h = hierarchy_of(m)
    assert h is not None and h.depth == 1 and h.classes == m.classes
    assert all(h.superclass(c) == c.split("/")[0] for c in m.classes)
    sizes = {s: len(cl) for s, cl in h.superclasses().items()}
    assert sizes == {"Balinese": 24, "Early_Aramaic": 22, "Greek": 24, "Korean": 40,
                     "Latin": 26}


def test_sop_superclass_is_the_final_folder(tmp_path: Path) -> None:
    write_sop(tmp_path, False)
    h = hierarchy_of(load_dataset("sop", tmp_path))
    assert h is not None
    assert h.superclasses() == {"bicycle": ["1", "2"], "chair": ["3", "4"], "sofa": ["5"]}


@pytest.mark.parametrize(("name", "make"), [
    ("BMW M3 Coupe 2012", "BMW"), ("AM General Hummer SUV 2000", "AM General"),
    ("Aston Martin V8 Vantage Convertible 2012", "Aston Martin"),
    ("Land Rover LR2 SUV 2012", "Land Rover"), ("001.Acura RL Sedan 2012", "Acura"),
    ("Mercedes-Benz SL-Class Coupe 2009", "Mercedes-Benz"), ("smart fortwo Convertible 2012",
                                                             "smart"),
])
def test_cars_make_from_the_class_name(name: str, make: str) -> None:
    assert cars_make(name) == make


def test_cars196_loader_exposes_makes_and_cub_has_none(tmp_path: Path) -> None:
    names = ["BMW M3 Coupe 2012", "BMW X6 SUV 2012", "Land Rover LR2 SUV 2012",
             "Land Rover Range Rover SUV 2012"]
    make_class_tree(tmp_path / "cars" / "images", {c: 2 for c in names}, ext=".jpg")
    h = hierarchy_of(load_dataset("cars196", tmp_path / "cars"))
    assert h is not None and h.superclasses() == {"BMW": names[:2], "Land Rover": names[2:]}
    make_class_tree(tmp_path / "cub" / "images", {f"{i:03d}.bird": 2 for i in range(1, 5)})
    assert hierarchy_of(load_dataset("cub200", tmp_path / "cub")) is None


CLASSES = ("a1", "a2", "b1", "b2", "c1")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "h.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_header_and_deeper_levels(tmp_path: Path) -> None:
    path = write(tmp_path, "class,family,order\na1,A,X\na2,A,X\nb1,B,X\n\nb2,B,X\nc1,C,Y\n")
    h = read_hierarchy(path, CLASSES)
    assert h.depth == 2 and h.superclass("c1") == "C" and h.sha256 is not None
    assert h.record()["levels"] == 2 and h.record()["superclasses"] == 3
    # closed forms: siblings 2 apart, cousins (same order) 4, other order 2 (depth + 1) = 6
    assert [h.tree_distance("a1", x) for x in ("a1", "a2", "b1", "c1")] == [0, 2, 4, 6]
    assert h.nearest_distance("a1", ["b1", "c1"]) == 4


@pytest.mark.parametrize(("text", "match"), [
    ("a1,A\na2,A\nb1,B\nb2,B\n", r"h\.csv: class 'c1' has no row \(1 dataset class"),
    ("a1,A\na2,A\nb1,B\nb2,B\nc1,C\nz9,C\n", r"h\.csv:6: class 'z9' is not a class of"),
    ("a1,A\na2,A\nb1,B\na1,B\nb2,B\nc1,C\n", r"h\.csv:4: class 'a1' is listed again \(first "
     r"at line 1\)"),
    ("a1,A,X\na2,A\n", r"h\.csv:2: row has 2 columns, the first row has 3"),
    ("a1,A,X\na2,A,Y\n", r"h\.csv:2: 'A' has parent 'Y' here but 'X' at line 1"),
    ("a1\n", r"h\.csv:1: row 'a1' has no superclass"),
    ("a1,\n", r"h\.csv:1: row 'a1,' has an empty cell"),
])
def test_csv_problems_are_one_line_errors_naming_the_row(tmp_path: Path, text: str,
                                                         match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        read_hierarchy(write(tmp_path, text), CLASSES)
    assert "\n" not in str(info.value)


def test_csv_that_is_no_text_or_no_file(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes(b"a1,\xff\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_hierarchy(path, CLASSES)
    with pytest.raises(DataError, match="does not exist"):
        read_hierarchy(tmp_path / "none.csv", CLASSES)


def test_semantic_shift_closed_forms() -> None:
    h = Hierarchy({"a1": ("A", "X"), "a2": ("A", "X"), "b1": ("B", "X"), "b2": ("B", "X"),
                   "c1": ("C", "Y"), "c2": ("C", "Y")}, "test")
    # test a2 (sibling a1 in train: 2), b1 and b2 (nearest a1, same order: 4)
    got = semantic_shift(h, ["a1", "c1"], ["a2", "b1", "b2"])
    assert got == {"unseen_share": 2 / 3, "tree_distance": (2 + 4 + 4) / 3}
    got = semantic_shift(h, ["a1", "a2"], ["c1", "c2"])
    assert got == {"unseen_share": 1.0, "tree_distance": 6.0}
    flat = Hierarchy({k: v[:1] for k, v in h.ancestors.items()}, "flat")
    assert semantic_shift(flat, ["a1", "b1"], ["a2", "c1"]) == {"unseen_share": 0.5}


def test_cli_refuses_a_bad_hierarchy_before_features(cli, omniglot_zip: Path, tmp_path: Path
                                                     ) -> None:
    bad = write(tmp_path, "class,alphabet\nGreek/character01,Greek\nGreek/character01,Greek\n")
    code, out, err = cli("splits", "generate", "omniglot", "--root", omniglot_zip,
                         "--procedure", "hierarchy", "--hierarchy", bad,
                         "-o", tmp_path / "x.json")
    assert code == 2 and not (tmp_path / "x.json").exists()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "h.csv:3: class 'Greek/character01' is listed again" in lines[0]


def test_report_plots_the_metrics_against_the_semantic_shift(tmp_path: Path) -> None:
    from test_report import results_frame, splitfile

    from oodml.report.build import build_report, semantic_axis
    from oodml.splits.semantic import with_semantic

    plain = splitfile(start=1)
    assert semantic_axis(plain) is None
    # c0..c3 in superclass A, c4..c7 in B: split 1 trains on A only (test B: all unseen),
    # splits 2 and 3 train on c4 or not (test c5..c7 in B: seen, unseen)
    h = Hierarchy({f"c{i}": ("A" if i < 4 else "B",) for i in range(8)}, "toy")
    sf = with_semantic(plain, h)
    assert semantic_axis(sf) == {1: 1.0, 2: 0.0, 3: 1.0}
    frame = results_frame().assign(splitfile_sha256=sf.sha256)
    out = tmp_path / "rep"
    build_report(frame, out, splitfile=sf)
    assert (out / "progression_semantic.png").is_file()
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Progression against semantic shift" in page and "toy" in page
