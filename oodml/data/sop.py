"""Stanford Online Products (``sop``) in the original archive layout or the ooDML layout.

Original: ROOT/<super>_final/<image> with ROOT/Ebay_train.txt and ROOT/Ebay_test.txt.
ooDML:    ROOT/images/<super>_final/<image> with ROOT/Info_Files/Ebay_{train,test}.txt.
Each info file has a header line, then ``image_id class_id super_class_id path`` rows.
Class = product ``class_id`` (as a string), superclass = the super folder without ``_final``;
default split = the official train/test files. Paths are checked to exist, not decoded.
"""

from __future__ import annotations

from pathlib import Path

from oodml.data.base import DATASETS, make_manifest, require_dir
from oodml.data.manifest import DirSource, Manifest, path_problem
from oodml.errors import DataError
from oodml.fileio import read_text

LAYOUT = (
    "ROOT/Ebay_train.txt + ROOT/Ebay_test.txt + ROOT/<super>_final/<image> (original) or "
    "ROOT/Info_Files/Ebay_*.txt + ROOT/images/<super>_final/<image> (ooDML)"
)


def find_info_files(root: Path) -> tuple[Path, Path, str]:
    """(train file, test file, image path prefix) for whichever layout ``root`` has."""
    for info, prefix in ((root / "Info_Files", "images/"), (root, "")):
        train, test = info / "Ebay_train.txt", info / "Ebay_test.txt"
        if train.is_file() and test.is_file():
            return train, test, prefix
    raise DataError(f"{root} has no Ebay_train.txt/Ebay_test.txt; expected {LAYOUT}")


def parse_info_file(path: Path) -> list[tuple[str, str, str]]:
    """(image path as written, class_id, superclass) per row of one Ebay_*.txt file."""
    lines = read_text(path, "SOP info file", error=DataError).splitlines()
    if not lines or not lines[0].split() or lines[0].split()[0] != "image_id":
        raise DataError(
            f"{path} does not start with the header 'image_id class_id super_class_id path'"
        )
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        cols = line.split()
        if not cols:
            continue
        if len(cols) != 4 or not cols[1].isdigit():
            raise DataError(
                f"{path}:{lineno}: expected 'image_id class_id super_class_id path', got {line!r}"
            )
        why = path_problem(cols[3])
        if why:
            raise DataError(f"{path}:{lineno}: image path {cols[3]!r} {why}; restore the file")
        folder = cols[3].split("/")[0]
        rows.append((cols[3], cols[1], folder.removesuffix("_final")))
    if not rows:
        raise DataError(f"{path} lists no images; restore the original file")
    return rows


@DATASETS.register("sop")
def load_sop(root: Path, skip_bad: bool = False) -> Manifest:
    """Stanford Online Products; class = product id, superclass kept, official split."""
    root = require_dir(root, LAYOUT)
    train_file, test_file, prefix = find_info_files(root)
    splits = {train_file: parse_info_file(train_file), test_file: parse_info_file(test_file)}
    where: dict[str, Path] = {}
    seen: set[str] = set()
    images = []
    for info, rows in splits.items():
        for path, cls, sup in rows:
            rel = prefix + path
            if rel in seen:
                raise DataError(f"{info} lists {path} more than once; restore the original file")
            seen.add(rel)
            other = where.setdefault(cls, info)
            if other != info:
                raise DataError(
                    f"class {cls} is listed in both {other} and {info}; "
                    "the official SOP split keeps train and test classes apart"
                )
            images.append((rel, cls, sup))
    missing = [rel for rel, _, _ in images if not (root / rel).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) listed in {train_file.parent} are missing, e.g. "
            f"{root / missing[0]}; expected {LAYOUT}"
        )
    train = sorted({cls for _, cls, _ in splits[train_file]})
    test = sorted({cls for _, cls, _ in splits[test_file]})
    return make_manifest(
        "sop", root, DirSource(root), images, train, test, skip_bad, lambda c: str(where[c])
    )
