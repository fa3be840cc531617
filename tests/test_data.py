"""Dataset loaders: each layout on tiny synthetic data, each bad input, the real Omniglot zip."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from oodml.data import list_datasets, load_dataset, verify_images
from oodml.errors import ConfigError, DataError


def write_image(path: Path, shade: int = 0, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 4), (shade, 255 - shade, 7)).save(path, format=fmt)


def make_class_tree(base: Path, counts: dict[str, int], ext: str = ".png") -> None:
    for cls, n in counts.items():
        for j in range(n):
            write_image(base / cls / f"img{j}{ext}", shade=10 * j, fmt="PNG")


def corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:20])


def test_registry_names_and_unknown_name(tmp_path: Path) -> None:
    assert list_datasets() == ["cars196", "cub200", "imagefolder", "omniglot", "sop"]
    with pytest.raises(ConfigError, match="unknown dataset 'nope'.*imagefolder"):
        load_dataset("nope", tmp_path)


def test_imagefolder_classes_split_and_filtering(tmp_path: Path) -> None:
    make_class_tree(tmp_path, {"d": 2, "a": 3, "c": 2, "b": 2})
    write_image(tmp_path / "a" / "UPPER.JPG", fmt="JPEG")
    write_image(tmp_path / "a" / "nested" / "deep.webp", fmt="WEBP")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    write_image(tmp_path / "a" / ".hidden.png")
    make_class_tree(tmp_path / ".cache", {"x": 2})
    write_image(tmp_path / "top_level.png")

    m = load_dataset("imagefolder", tmp_path)
    assert m.classes == ("a", "b", "c", "d")
    assert m.class_counts == {"a": 5, "b": 2, "c": 2, "d": 2}
    assert m.default_train == ("a", "b") and m.default_test == ("c", "d")
    assert m.superclasses is None and m.skipped == ()
    assert list(m.paths) == sorted(m.paths)
    assert "a/UPPER.JPG" in m.paths and "a/nested/deep.webp" in m.paths
    assert all((tmp_path / p).is_file() for p in m.paths)
    for i in range(len(m)):
        assert m.load_image(i).mode == "RGB"
    lines = sorted(f"{c}\t{p}\n" for c, p in zip(m.labels, m.paths, strict=True))
    assert m.fingerprint == hashlib.sha256("".join(lines).encode()).hexdigest()


def test_odd_class_count_puts_the_extra_class_in_test(tmp_path: Path) -> None:
    make_class_tree(tmp_path, {c: 2 for c in "abcde"})
    m = load_dataset("imagefolder", tmp_path)
    assert m.default_train == ("a", "b") and m.default_test == ("c", "d", "e")


def test_loading_twice_gives_identical_manifests(tmp_path: Path) -> None:
    make_class_tree(tmp_path / "images", {f"{i:03d}.bird": 2 for i in range(1, 7)})
    first, second = load_dataset("cub200", tmp_path), load_dataset("cub200", tmp_path)
    assert first == second and first.fingerprint == second.fingerprint


@pytest.mark.parametrize("name", ["cub200", "cars196"])
def test_oodml_layout_half_split_and_paths(tmp_path: Path, name: str) -> None:
    classes = [f"{i:03d}.cls" for i in range(1, 9)]
    make_class_tree(tmp_path / "images", {c: 2 for c in classes}, ext=".jpg")
    m = load_dataset(name, tmp_path)
    assert m.name == name
    assert m.default_train == tuple(classes[:4]) and m.default_test == tuple(classes[4:])
    assert all(p.startswith("images/") and (tmp_path / p).is_file() for p in m.paths)
    assert set(m.class_counts.values()) == {2}


@pytest.mark.parametrize("name", ["cub200", "cars196"])
def test_oodml_layout_without_images_folder(tmp_path: Path, name: str) -> None:
    make_class_tree(tmp_path, {"a": 2, "b": 2})
    with pytest.raises(DataError, match=rf"{tmp_path}.*images/"):
        load_dataset(name, tmp_path)


@pytest.mark.parametrize("name", list_datasets())
def test_missing_root(tmp_path: Path, name: str) -> None:
    missing = tmp_path / "not_there"
    with pytest.raises(DataError, match=rf"{missing} does not exist"):
        load_dataset(name, missing)


def test_root_without_class_folders(tmp_path: Path) -> None:
    write_image(tmp_path / "loose.png")
    with pytest.raises(DataError, match=rf"no class folders found in {tmp_path}"):
        load_dataset("imagefolder", tmp_path)


def test_empty_class_folder(tmp_path: Path) -> None:
    make_class_tree(tmp_path, {"a": 2})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=rf"class folder {tmp_path / 'empty'} holds no images"):
        load_dataset("imagefolder", tmp_path)


def test_class_with_one_image(tmp_path: Path) -> None:
    make_class_tree(tmp_path, {"a": 2, "single": 1})
    with pytest.raises(DataError, match=rf"'single' at {tmp_path / 'single'} has 1 image.*2"):
        load_dataset("imagefolder", tmp_path)


def test_corrupt_image_fails_on_decode_and_is_skipped_with_skip_bad(tmp_path: Path) -> None:
    make_class_tree(tmp_path, {"a": 3, "b": 2, "c": 2, "d": 2})
    corrupt(tmp_path / "a" / "img1.png")
    corrupt(tmp_path / "c" / "img0.png")

    m = load_dataset("imagefolder", tmp_path)
    assert len(m) == 9
    with pytest.raises(DataError, match=rf"{tmp_path / 'a' / 'img1.png'}.*--skip-bad"):
        m.load_image(m.paths.index("a/img1.png"))
    assert verify_images(m) == ["a/img1.png", "c/img0.png"]

    ok = load_dataset("imagefolder", tmp_path, skip_bad=True)
    assert ok.skipped == ("a/img1.png", "c/img0.png", "c/img1.png")
    assert ok.classes == ("a", "b", "d") and ok.class_counts["a"] == 2
    assert ok.default_train == ("a", "b") and ok.default_test == ("d",)
    assert verify_images(ok) == []


def test_missing_image_file_raises_data_error_on_read(tmp_path: Path) -> None:
    make_class_tree(tmp_path, {"a": 2, "b": 2})
    m = load_dataset("imagefolder", tmp_path)
    (tmp_path / "b" / "img0.png").unlink()
    with pytest.raises(DataError, match=rf"cannot read image {tmp_path / 'b' / 'img0.png'}"):
        m.load_image(m.paths.index("b/img0.png"))


# --- Stanford Online Products --------------------------------------------------------------

SOP_TRAIN = [("1", "bicycle", 2), ("2", "bicycle", 3), ("3", "chair", 2)]
SOP_TEST = [("4", "chair", 2), ("5", "sofa", 2)]
SUPER_ID = {"bicycle": 1, "chair": 2, "sofa": 3}


def write_sop(root: Path, oodml_layout: bool) -> None:
    info = root / "Info_Files" if oodml_layout else root
    images = root / "images" if oodml_layout else root
    image_id = 0
    for fname, rows in (("Ebay_train.txt", SOP_TRAIN), ("Ebay_test.txt", SOP_TEST)):
        lines = ["image_id class_id super_class_id path"]
        for cls, sup, n in rows:
            for j in range(n):
                image_id += 1
                rel = f"{sup}_final/{cls}00{j}_{j}.JPG"
                write_image(images / rel, shade=j, fmt="JPEG")
                lines.append(f"{image_id} {cls} {SUPER_ID[sup]} {rel}")
        info.mkdir(parents=True, exist_ok=True)
        (info / fname).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("oodml_layout", [False, True])
def test_sop_layouts(tmp_path: Path, oodml_layout: bool) -> None:
    write_sop(tmp_path, oodml_layout)
    m = load_dataset("sop", tmp_path)
    assert m.classes == ("1", "2", "3", "4", "5")
    assert m.class_counts == {"1": 2, "2": 3, "3": 2, "4": 2, "5": 2}
    assert m.default_train == ("1", "2", "3") and m.default_test == ("4", "5")
    assert all((tmp_path / p).is_file() for p in m.paths)
    assert all(p.startswith("images/") == oodml_layout for p in m.paths)
    supers = dict(zip(m.labels, m.superclasses or (), strict=True))
    assert supers == {"1": "bicycle", "2": "bicycle", "3": "chair", "4": "chair", "5": "sofa"}
    assert m.load_image(0).mode == "RGB"


def test_sop_layouts_share_labels_and_superclasses(tmp_path: Path) -> None:
    write_sop(tmp_path / "orig", False)
    write_sop(tmp_path / "oodml", True)
    a, b = load_dataset("sop", tmp_path / "orig"), load_dataset("sop", tmp_path / "oodml")
    assert a.labels == b.labels and a.superclasses == b.superclasses
    assert b.paths == tuple("images/" + p for p in a.paths)


def test_sop_without_info_files(tmp_path: Path) -> None:
    make_class_tree(tmp_path / "bicycle_final", {"x": 2})
    with pytest.raises(DataError, match=rf"{tmp_path} has no Ebay_train.txt"):
        load_dataset("sop", tmp_path)


def test_sop_missing_image(tmp_path: Path) -> None:
    write_sop(tmp_path, False)
    (tmp_path / "sofa_final" / "5000_0.JPG").unlink()
    with pytest.raises(DataError, match=rf"1 image\(s\).*{tmp_path / 'sofa_final' / '5000_0.JPG'}"):
        load_dataset("sop", tmp_path)


def test_sop_malformed_row(tmp_path: Path) -> None:
    write_sop(tmp_path, True)
    info = tmp_path / "Info_Files" / "Ebay_test.txt"
    info.write_text(info.read_text() + "99 oops\n")
    with pytest.raises(DataError, match=rf"{info}:\d+: expected 'image_id class_id"):
        load_dataset("sop", tmp_path)


@pytest.mark.parametrize("bad", ["../outside/1.JPG", "/etc/passwd", "sofa_final/../../x.JPG"])
def test_sop_path_escaping_the_root(tmp_path: Path, bad: str) -> None:
    write_sop(tmp_path, False)
    info = tmp_path / "Ebay_test.txt"
    info.write_text(info.read_text() + f"99 9 9 {bad}\n")
    with pytest.raises(DataError, match=rf"{info}:\d+: image path .* restore the file"):
        load_dataset("sop", tmp_path)


def test_sop_missing_header(tmp_path: Path) -> None:
    write_sop(tmp_path, False)
    info = tmp_path / "Ebay_train.txt"
    info.write_text("\n".join(info.read_text().splitlines()[1:]))
    with pytest.raises(DataError, match=rf"{info} does not start with the header"):
        load_dataset("sop", tmp_path)


def test_sop_class_in_train_and_test(tmp_path: Path) -> None:
    write_sop(tmp_path, False)
    test_file = tmp_path / "Ebay_test.txt"
    test_file.write_text(test_file.read_text().replace(" 5 3 sofa", " 1 3 sofa"))
    with pytest.raises(DataError, match=r"class 1 is listed in both .*Ebay_train.txt"):
        load_dataset("sop", tmp_path)


def test_sop_class_with_one_image_names_info_file(tmp_path: Path) -> None:
    write_sop(tmp_path, False)
    test_file = tmp_path / "Ebay_test.txt"
    lines = test_file.read_text().splitlines()
    test_file.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match=rf"class '5' at {test_file} has 1 image"):
        load_dataset("sop", tmp_path)


# --- Omniglot -------------------------------------------------------------------------------


def write_omniglot(archive: Path) -> None:
    for alphabet in ("Greek", "Latin", "Runic"):
        for char in ("character01", "character02"):
            for rep in range(3):
                write_image(archive / alphabet / char / f"0{rep}_{char[-2:]}.png", shade=rep)


def zip_folder(folder: Path, zip_path: Path, top: str) -> None:
    with zipfile.ZipFile(zip_path, "w") as zf:
        for f in sorted(folder.rglob("*")):
            arc = f.relative_to(folder).as_posix()
            zf.write(f, f"{top}/{arc}" if top else arc)


def test_omniglot_zip_folder_and_parent_share_the_fingerprint(tmp_path: Path) -> None:
    folder = tmp_path / "extracted" / "images_background_tiny"
    write_omniglot(folder)
    zip_folder(folder, tmp_path / "images_background_tiny.zip", "images_background_tiny")
    zip_folder(folder, tmp_path / "flat.zip", "")

    from_folder = load_dataset("omniglot", folder)
    assert len(from_folder.classes) == 6 and len(from_folder) == 18
    assert from_folder.classes[0] == "Greek/character01"
    assert from_folder.paths[0] == "Greek/character01/00_01.png"
    assert set(from_folder.superclasses or ()) == {"Greek", "Latin", "Runic"}
    assert from_folder.default_train == (
        "Greek/character01",
        "Greek/character02",
        "Latin/character01",
    )
    for root in (
        tmp_path / "images_background_tiny.zip",
        tmp_path / "flat.zip",
        tmp_path / "extracted",
    ):
        other = load_dataset("omniglot", root)
        assert other.fingerprint == from_folder.fingerprint
        assert other.paths == from_folder.paths and other.superclasses == from_folder.superclasses
        assert other.read_bytes(5) == from_folder.read_bytes(5)


def test_omniglot_parent_prefers_folder_over_zip_of_the_same_archive(tmp_path: Path) -> None:
    write_omniglot(tmp_path / "images_evaluation")
    zip_folder(tmp_path / "images_evaluation", tmp_path / "images_evaluation.zip", "x")
    m = load_dataset("omniglot", tmp_path)
    assert m.root == tmp_path / "images_evaluation" and len(m) == 18


def test_omniglot_parent_with_two_archives(tmp_path: Path) -> None:
    write_omniglot(tmp_path / "images_background")
    write_omniglot(tmp_path / "images_evaluation")
    with pytest.raises(DataError, match=rf"{tmp_path} holds several Omniglot archives"):
        load_dataset("omniglot", tmp_path)


def test_omniglot_not_a_zip(tmp_path: Path) -> None:
    bad = tmp_path / "images_background.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=rf"cannot read zip archive {bad}"):
        load_dataset("omniglot", bad)


def test_omniglot_zip_with_wrong_layout(tmp_path: Path) -> None:
    make_class_tree(tmp_path / "flat", {"a": 2, "b": 2})
    zip_folder(tmp_path / "flat", tmp_path / "wrong.zip", "")
    with pytest.raises(DataError, match=rf"zip archive {tmp_path / 'wrong.zip'} does not hold"):
        load_dataset("omniglot", tmp_path / "wrong.zip")


def test_omniglot_corrupt_image_inside_zip_is_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "images_background"
    write_omniglot(folder)
    corrupt(folder / "Latin" / "character02" / "01_02.png")
    zip_folder(folder, tmp_path / "images_background.zip", "images_background")
    m = load_dataset("omniglot", tmp_path / "images_background.zip", skip_bad=True)
    assert m.skipped == ("Latin/character02/01_02.png",)
    assert len(m) == 17 and m.class_counts["Latin/character02"] == 2


# --- real data ------------------------------------------------------------------------------


def test_shared_omniglot_zip(omniglot_zip: Path) -> None:
    m = load_dataset("omniglot", omniglot_zip)
    assert len(m.classes) == 136 and len(m) == 2720
    assert set(m.class_counts.values()) == {20}
    assert len(set(m.superclasses or ())) == 5
    assert all(c.split("/")[0] == s for c, s in zip(m.labels, m.superclasses or (), strict=True))
    assert len(m.default_train) == 68 and set(m.default_train).isdisjoint(m.default_test)
    assert max(m.default_train) < min(m.default_test)
    for i in (0, 1357, 2719):
        im = m.load_image(i)
        assert im.mode == "RGB" and im.size == (105, 105)


def test_shared_omniglot_zip_matches_its_extracted_folder(
    omniglot_zip: Path, tmp_path: Path
) -> None:
    with zipfile.ZipFile(omniglot_zip) as zf:
        zf.extractall(tmp_path)
    zipped = load_dataset("omniglot", omniglot_zip)
    extracted = load_dataset("omniglot", tmp_path / "images_background_small1")
    assert extracted.fingerprint == zipped.fingerprint
    assert extracted.paths == zipped.paths and extracted.labels == zipped.labels
    assert extracted.read_bytes(100) == zipped.read_bytes(100)
