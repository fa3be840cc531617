"""`oodml datasets check/info`: local copies, right and wrong in each way, against the
published facts (real Omniglot subset, full-size synthetic CUB, scaled synthetic SOP/CARS)."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import pytest

from oodml.data import check
from oodml.data.check import FACTS, check_dataset, dataset_info, info_lines
from oodml.errors import ConfigError, DataError


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_published_facts_add_up():
    for f in FACTS.values():
        if f.train_classes is not None:
            assert f.train_classes + f.test_classes == f.classes
        if f.train_images is not None:
            assert f.train_images + f.test_images == f.images
        if f.per_class is not None:
            assert f.per_class * f.classes == f.images
        if f.alphabets:
            assert len(f.alphabets) == f.superclasses
            counts = [n for n in f.alphabets.values() if n is not None]
            if len(counts) == len(f.alphabets):
                assert sum(counts) == f.classes
    assert not set(check.OMNIGLOT_BACKGROUND) & set(check.OMNIGLOT_EVALUATION)


def test_info_names_source_and_layout():
    lines = info_lines("cub200")
    text = "\n".join(lines)
    assert "caltech.edu" in text and "ROOT/images/" in text and "11,788" in text
    assert dataset_info("sop").train_images == 59_551
    with pytest.raises(ConfigError, match="omniglot-background"):
        dataset_info("omniglot")


# --- Omniglot: the real shared subset, and edited extracted copies ---------------------------


def test_shared_subset_matches(omniglot_zip):
    report = check_dataset("omniglot-small1", omniglot_zip)
    assert report.ok, report.problems
    assert report.observed == {"classes": 136, "images": 2720, "alphabets": 5}
    assert report.notes == ()


@pytest.fixture()
def extracted(omniglot_zip, tmp_path) -> Path:
    with zipfile.ZipFile(omniglot_zip) as zf:
        zf.extractall(tmp_path)
    return tmp_path / "images_background_small1"


def test_edited_subset_lists_each_difference(extracted):
    import shutil

    shutil.rmtree(extracted / "Greek" / "character03")
    next((extracted / "Latin" / "character01").iterdir()).unlink()
    shutil.copytree(extracted / "Korean", extracted / "Klingon")
    report = check_dataset("omniglot-small1", extracted)
    assert not report.ok
    text = "\n".join(report.problems)
    assert "classes: 175, published 136 (+39)" in text
    assert "images: 3,499, published 2,720 (+779)" in text
    assert "alphabets not in omniglot-small1: Klingon" in text
    assert "alphabet Greek: 23 characters, published 24" in text
    assert "Latin/character01 (19)" in text


def test_subset_is_not_the_background_set(omniglot_zip):
    report = check_dataset("omniglot-background", omniglot_zip)
    text = "\n".join(report.problems)
    assert "classes: 136, published 964" in text and "missing alphabets: " in text
    assert "Alphabet_of_the_Magi" in text


def test_other_zip_bytes_are_a_note(extracted, tmp_path):
    repacked = tmp_path / "images_background_small1.zip"
    with zipfile.ZipFile(repacked, "w") as zf:
        for p in sorted(extracted.rglob("*.png")):
            zf.write(p, p.relative_to(tmp_path).as_posix())
    report = check_dataset("omniglot-small1", repacked)
    assert report.ok and len(report.notes) == 1 and "differs" in report.notes[0]


def test_unreadable_layout_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "empty").mkdir()
    report = check_dataset("omniglot-evaluation", tmp_path / "empty")
    assert not report.ok and "cannot read the layout" in report.problems[0]
    assert "\n" not in report.problems[0]


def test_a_root_that_does_not_exist_is_an_error_like_every_command_s(tmp_path):
    """Nothing to compare: a one-line DataError (exit 2 on the command line), not a report."""
    from oodml.errors import DataError

    with pytest.raises(DataError, match="nowhere does not exist"):
        check_dataset("omniglot-evaluation", tmp_path / "nowhere")


# --- CUB-200-2011 at full size (empty files: listing never decodes) ---------------------------


def make_cub(root: Path) -> None:
    for k in range(1, 201):
        n = 59 if k <= 188 else 58
        for i in range(n):
            touch(root / "images" / f"{k:03d}.Bird_{k}" / f"Bird_{k}_{i:04d}.jpg")


def test_cub_right_and_wrong(tmp_path):
    import shutil

    root = tmp_path / "CUB_200_2011"
    make_cub(root)
    assert sum(59 if k <= 188 else 58 for k in range(1, 201)) == 11_788
    good = check_dataset("cub200", root)
    assert good.ok and good.observed == {"classes": 200, "images": 11_788}

    shutil.rmtree(root / "images" / "042.Bird_42")
    report = check_dataset("cub200", root)
    assert report.problems == (
        "classes: 199, published 200 (-1)",
        "images: 11,729, published 11,788 (-59)",
        "missing class numbers: 042",
    )
    (root / "images" / "007.Bird_7").rename(root / "images" / "Bird_7")
    renamed = check_dataset("cub200", root)
    assert "class folders not named NNN.Name: Bird_7" in renamed.problems


def test_cub_without_images_folder(tmp_path):
    touch(tmp_path / "001.Bird" / "a.jpg")
    report = check_dataset("cub200", tmp_path)
    assert not report.ok and "images/" in report.problems[0]


# --- SOP and CARS196 with the published facts scaled down ------------------------------------


def make_sop(root: Path, train: dict[int, int], test: dict[int, int]) -> None:
    supers = ["bicycle", "chair", "lamp"]
    image_id = 1
    for fname, classes in (("Ebay_train.txt", train), ("Ebay_test.txt", test)):
        lines = ["image_id class_id super_class_id path"]
        for cls, n in classes.items():
            sup = supers[cls % 3]
            for i in range(n):
                rel = f"{sup}_final/{cls}_{i}.JPG"
                touch(root / rel)
                lines.append(f"{image_id} {cls} {cls % 3 + 1} {rel}")
                image_id += 1
        (root / fname).write_text("\n".join(lines) + "\n")


@pytest.fixture()
def small_sop(monkeypatch):
    facts = dataclasses.replace(
        FACTS["sop"], classes=6, images=15, train_classes=3, test_classes=3, train_images=7,
        test_images=8, superclasses=3,
    )
    monkeypatch.setitem(FACTS, "sop", facts)


def test_sop_right(tmp_path, small_sop):
    make_sop(tmp_path, {0: 2, 1: 2, 2: 3}, {3: 2, 4: 3, 5: 3})
    report = check_dataset("sop", tmp_path)
    assert report.ok, report.problems
    assert report.observed == {"classes": 6, "images": 15, "superclasses": 3}


def test_sop_wrong_split_and_images(tmp_path, small_sop):
    make_sop(tmp_path, {0: 2, 1: 2, 2: 3, 3: 2}, {4: 3, 5: 2})
    report = check_dataset("sop", tmp_path)
    assert report.problems == (
        "images: 14, published 15 (-1)",
        "train classes: 4, published 3 (+1)",
        "test classes: 2, published 3 (-1)",
        "train images: 9, published 7 (+2)",
        "test images: 5, published 8 (-3)",
    )


def test_sop_missing_image_is_a_layout_problem(tmp_path, small_sop):
    make_sop(tmp_path, {0: 2, 1: 2, 2: 3}, {3: 2, 4: 3, 5: 3})
    (tmp_path / "lamp_final" / "5_0.JPG").unlink()
    report = check_dataset("sop", tmp_path)
    assert len(report.problems) == 1 and "missing" in report.problems[0]


def test_cars_counts(tmp_path, monkeypatch):
    monkeypatch.setitem(
        FACTS, "cars196",
        dataclasses.replace(FACTS["cars196"], classes=4, images=10, train_classes=2,
                            test_classes=2),
    )
    for c, n in (("AM General Hummer", 3), ("Acura RL", 2), ("BMW M3", 2), ("Volvo 240", 3)):
        for i in range(n):
            touch(tmp_path / "images" / c / f"{i:05d}.jpg")
    assert check_dataset("cars196", tmp_path).ok
    touch(tmp_path / "images" / "Volvo 240" / "extra.jpg")
    assert check_dataset("cars196", tmp_path).problems == ("images: 11, published 10 (+1)",)


def test_the_loader_name_omniglot_points_to_its_published_archives():
    with pytest.raises(ConfigError, match="'omniglot' is published as several archives") as err:
        dataset_info("omniglot")
    assert "omniglot-small1" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'"):
        dataset_info("imagenet")


# --- `omniglot`: which published archive a copy is --------------------------------------------


def omniglot_archive(path: Path, top: str, characters: dict[str, int], drawings: int = 2) -> Path:
    """A zip in the published layout with empty images (listing never decodes them)."""
    with zipfile.ZipFile(path, "w") as zf:
        for alphabet, n in characters.items():
            for c in range(1, n + 1):
                for d in range(1, drawings + 1):
                    zf.writestr(f"{top}/{alphabet}/character{c:02d}/0001_{d:02d}.png", b"")
    return path


def test_the_shared_zip_is_recognised_by_its_hash(omniglot_zip):
    report = check_dataset("omniglot", omniglot_zip)
    assert report.ok and report.name == "omniglot-small1"
    assert report.notes == ("recognised as omniglot-small1 (by its sha256)",)


def test_other_bytes_are_recognised_by_their_alphabets(extracted, tmp_path):
    """A repacked small1 (other zip bytes) and an evaluation-set copy with few characters are
    told apart by their alphabet names; the check then lists how the copy differs."""
    repacked = tmp_path / "repacked.zip"
    with zipfile.ZipFile(repacked, "w") as zf:
        for p in sorted(extracted.rglob("*.png")):
            zf.write(p, p.relative_to(tmp_path).as_posix())
    report = check_dataset("omniglot", repacked)
    assert report.ok and report.name == "omniglot-small1"
    assert report.notes[0] == "recognised as omniglot-small1 (by its 5 alphabets)"
    assert "differs from the published" in report.notes[1]
    evaluation = omniglot_archive(tmp_path / "images_evaluation.zip", "images_evaluation",
                                  dict.fromkeys(check.OMNIGLOT_EVALUATION, 1), drawings=20)
    report = check_dataset("omniglot", evaluation)
    assert report.name == "omniglot-evaluation"
    assert report.notes == ("recognised as omniglot-evaluation (by its 20 alphabets)",)
    assert report.problems[0] == "classes: 20, published 659 (-639)"


def test_an_unknown_archive_is_one_line_naming_what_was_compared(tmp_path, cli):
    made = omniglot_archive(tmp_path / "mine.zip", "images_mine", {"Greek": 3, "Latin": 2})
    with pytest.raises(DataError) as err:
        check_dataset("omniglot", made)
    text = str(err.value)
    assert "\n" not in text and "sha256" in text and "alphabet names" in text
    assert "it has 2 alphabets, 5 characters, 10 images" in text
    for f in check.archives_of("omniglot"):
        assert f"{f.name}: {len(f.alphabets)} alphabets, {f.classes:,} characters" in text
    code, out, err_text = cli("datasets", "check", "omniglot", "--root", made)
    assert code == 2 and err_text.strip() == f"error: {text}"


def test_the_command_names_the_archive_it_recognised(omniglot_zip, cli):
    code, out, _ = cli("datasets", "check", "omniglot", "--root", omniglot_zip)
    assert code == 0 and "note: recognised as omniglot-small1 (by its sha256)" in out
    assert out.strip().endswith("matches the published facts of omniglot-small1")
