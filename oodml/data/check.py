"""Published facts about the ooDML datasets, and a check of a local copy against them.

Published class splits only make sense on the images they were made from; the most common
trouble is a copy with missing, extra or renamed classes. ``check_dataset(name, root)`` lists
the copy (no decoding, like the loaders) and returns every difference from the published
counts; ``dataset_info(name)`` says where the dataset is published and the layout oodml reads.
Given ``omniglot``, the check recognises which published archive the copy is.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from oodml.data import load_dataset
from oodml.data.manifest import Manifest
from oodml.errors import ConfigError, DataError

OMNIGLOT_BACKGROUND = {
    "Alphabet_of_the_Magi": 20, "Anglo-Saxon_Futhorc": 29, "Arcadian": 26, "Armenian": 41,
    "Asomtavruli_(Georgian)": 40, "Balinese": 24, "Bengali": 46,
    "Blackfoot_(Canadian_Aboriginal_Syllabics)": 14, "Braille": 26, "Burmese_(Myanmar)": 34,
    "Cyrillic": 33, "Early_Aramaic": 22, "Futurama": 26, "Grantha": 43, "Greek": 24,
    "Gujarati": 48, "Hebrew": 22, "Inuktitut_(Canadian_Aboriginal_Syllabics)": 16,
    "Japanese_(hiragana)": 52, "Japanese_(katakana)": 47, "Korean": 40, "Latin": 26,
    "Malay_(Jawi_-_Arabic)": 40, "Mkhedruli_(Georgian)": 41, "N_Ko": 33,
    "Ojibwe_(Canadian_Aboriginal_Syllabics)": 14, "Sanskrit": 42, "Syriac_(Estrangelo)": 23,
    "Tagalog": 17, "Tifinagh": 55,
}
OMNIGLOT_EVALUATION = (
    "Angelic", "Atemayar_Qelisayer", "Atlantean", "Aurek-Besh", "Avesta", "Ge_ez", "Glagolitic",
    "Gurmukhi", "Kannada", "Keble", "Malayalam", "Manipuri", "Mongolian",
    "Old_Church_Slavonic_(Cyrillic)", "Oriya", "Sylheti", "Syriac_(Serto)", "Tengwar", "Tibetan",
    "ULOG",
)
SMALL1_ALPHABETS = ("Balinese", "Early_Aramaic", "Greek", "Korean", "Latin")
SMALL1_SHA256 = "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4"
CUB_CLASS = re.compile(r"^(\d{3})\.\S+$")


@dataclass(frozen=True)
class DatasetFacts:
    """What the dataset's authors published, and how oodml reads it."""

    name: str
    title: str
    loader: str
    url: str
    citation: str
    layout: str
    classes: int
    images: int
    train_classes: int | None = None
    test_classes: int | None = None
    train_images: int | None = None
    test_images: int | None = None
    superclasses: int | None = None
    per_class: int | None = None
    alphabets: dict[str, int | None] = field(default_factory=dict)
    zip_sha256: str | None = None
    notes: str = ""


def _alphabets(names, counts=None) -> dict[str, int | None]:
    return {a: (counts or {}).get(a) for a in names}


OMNIGLOT_LAYOUT = (
    "the archive as published, zipped or extracted: ROOT = images_<set>.zip or the "
    "images_<set>/ folder (or a folder holding exactly one of them), images at "
    "<alphabet>/<characterNN>/<id>_<drawer>.png; class = alphabet/characterNN"
)
FACTS: dict[str, DatasetFacts] = {
    f.name: f
    for f in (
        DatasetFacts(
            name="cub200",
            title="Caltech-UCSD Birds-200-2011",
            loader="cub200",
            url="https://www.vision.caltech.edu/datasets/cub_200_2011/",
            citation="Wah et al., The Caltech-UCSD Birds-200-2011 Dataset, CNS-TR-2011-001",
            layout="ROOT/images/<NNN.Class_Name>/<image>.jpg (the CUB_200_2011 folder as "
            "extracted); ooDML's default split: classes 001-100 train, 101-200 test",
            classes=200,
            images=11_788,
            train_classes=100,
            test_classes=100,
        ),
        DatasetFacts(
            name="cars196",
            title="Stanford Cars (CARS196)",
            loader="cars196",
            url="http://ai.stanford.edu/~jkrause/cars/car_dataset.html",
            citation="Krause et al., 3D Object Representations for Fine-Grained "
            "Categorization, ICCV Workshops 2013",
            layout="ROOT/images/<class>/<image>.jpg, one folder per car model (ooDML's "
            "layout, built from cars_annos.mat); default split: first 98 sorted classes train",
            classes=196,
            images=16_185,
            train_classes=98,
            test_classes=98,
        ),
        DatasetFacts(
            name="sop",
            title="Stanford Online Products",
            loader="sop",
            url="https://cvgl.stanford.edu/projects/lifted_struct/",
            citation="Oh Song et al., Deep Metric Learning via Lifted Structured Feature "
            "Embedding, CVPR 2016",
            layout="ROOT/Ebay_train.txt, ROOT/Ebay_test.txt, ROOT/<super>_final/<image> (the "
            "Stanford_Online_Products folder as extracted) or ROOT/Info_Files/Ebay_*.txt with "
            "ROOT/images/<super>_final/<image> (ooDML)",
            classes=22_634,
            images=120_053,
            train_classes=11_318,
            test_classes=11_316,
            train_images=59_551,
            test_images=60_502,
            superclasses=12,
        ),
        DatasetFacts(
            name="omniglot-background",
            title="Omniglot, background set",
            loader="omniglot",
            url="https://github.com/brendenlake/omniglot (python/images_background.zip)",
            citation="Lake et al., Human-level concept learning through probabilistic program "
            "induction, Science 2015",
            layout=OMNIGLOT_LAYOUT,
            classes=964,
            images=19_280,
            superclasses=30,
            per_class=20,
            alphabets=_alphabets(OMNIGLOT_BACKGROUND, OMNIGLOT_BACKGROUND),
        ),
        DatasetFacts(
            name="omniglot-evaluation",
            title="Omniglot, evaluation set",
            loader="omniglot",
            url="https://github.com/brendenlake/omniglot (python/images_evaluation.zip)",
            citation="Lake et al., Science 2015",
            layout=OMNIGLOT_LAYOUT,
            classes=659,
            images=13_180,
            superclasses=20,
            per_class=20,
            alphabets=_alphabets(OMNIGLOT_EVALUATION),
        ),
        DatasetFacts(
            name="omniglot-small1",
            title="Omniglot, background small 1 subset (the shared test data)",
            loader="omniglot",
            url="https://github.com/brendenlake/omniglot (python/images_background_small1.zip)",
            citation="Lake et al., Science 2015",
            layout=OMNIGLOT_LAYOUT,
            classes=136,
            images=2_720,
            superclasses=5,
            per_class=20,
            alphabets=_alphabets(SMALL1_ALPHABETS, OMNIGLOT_BACKGROUND),
            zip_sha256=SMALL1_SHA256,
        ),
    )
}


def dataset_names() -> list[str]:
    return sorted(FACTS)


def dataset_info(name: str) -> DatasetFacts:
    """The published facts and expected layout of ``name`` (see ``dataset_names()``)."""
    try:
        return FACTS[name]
    except KeyError:
        variants = [n for n in dataset_names() if n.startswith(f"{name}-")]
        if variants:
            raise ConfigError(
                f"{name!r} is published as several archives with their own facts: "
                f"{', '.join(variants)}; name one of them"
            ) from None
        raise ConfigError(
            f"unknown dataset {name!r}; choose one of: {', '.join(dataset_names())}"
        ) from None


def info_lines(name: str) -> list[str]:
    """``dataset_info`` as short 'key: value' lines for printing."""
    f = dataset_info(name)
    lines = [
        f"{f.name}: {f.title}",
        f"published at: {f.url}",
        f"cite: {f.citation}",
        f"oodml loader: --dataset {f.loader}",
        f"layout: {f.layout}",
        f"classes: {f.classes:,}  images: {f.images:,}",
    ]
    if f.train_classes is not None:
        lines.append(f"default split: {f.train_classes:,} train / {f.test_classes:,} test classes")
    if f.train_images is not None:
        lines.append(f"images: {f.train_images:,} train / {f.test_images:,} test")
    if f.superclasses is not None:
        kind = "alphabets" if f.alphabets else "superclasses"
        lines.append(f"{kind}: {f.superclasses}")
    if f.per_class is not None:
        lines.append(f"images per class: {f.per_class}")
    if f.zip_sha256:
        lines.append(f"zip sha256: {f.zip_sha256}")
    return lines


@dataclass(frozen=True)
class CheckReport:
    """The result of ``check_dataset``: empty ``problems`` means the copy matches."""

    name: str
    root: Path
    observed: dict[str, int]
    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def _differs(what: str, seen: int, published: int | None) -> list[str]:
    if published is None or seen == published:
        return []
    return [f"{what}: {seen:,}, published {published:,} ({seen - published:+,})"]


def _names(items, limit: int = 5) -> str:
    items = sorted(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _omniglot_problems(m: Manifest, f: DatasetFacts) -> list[str]:
    problems = []
    alphabets = Counter(c.split("/")[0] for c in m.classes)
    missing = set(f.alphabets).difference(alphabets)
    extra = set(alphabets).difference(f.alphabets)
    if missing:
        problems.append(f"missing alphabets: {_names(missing)}")
    if extra:
        problems.append(f"alphabets not in {f.name}: {_names(extra)}")
    for a, n in sorted(f.alphabets.items()):
        if n is not None and a in alphabets and alphabets[a] != n:
            problems.append(f"alphabet {a}: {alphabets[a]} characters, published {n}")
    if f.per_class is not None:
        off = {c: n for c, n in m.class_counts.items() if n != f.per_class}
        if off:
            shown = _names(f"{c} ({n})" for c, n in off.items())
            problems.append(
                f"{len(off)} character(s) without {f.per_class} drawings: {shown}"
            )
    return problems


def _cub_problems(m: Manifest) -> list[str]:
    numbers = {}
    bad = []
    for c in m.classes:
        hit = CUB_CLASS.match(c)
        if hit:
            numbers[int(hit.group(1))] = c
        else:
            bad.append(c)
    problems = []
    if bad:
        problems.append(f"class folders not named NNN.Name: {_names(bad)}")
    missing = sorted(set(range(1, 201)).difference(numbers))
    if missing and not bad:
        problems.append(f"missing class numbers: {_names(f'{n:03d}' for n in missing)}")
    return problems


def _sop_problems(m: Manifest, f: DatasetFacts) -> list[str]:
    train, test = set(m.default_train), set(m.default_test)
    counts = m.class_counts
    problems = _differs("train classes", len(train), f.train_classes)
    problems += _differs("test classes", len(test), f.test_classes)
    problems += _differs("train images", sum(counts[c] for c in train), f.train_images)
    problems += _differs("test images", sum(counts[c] for c in test), f.test_images)
    supers = len(set(m.superclasses or ()))
    problems += _differs("superclasses", supers, f.superclasses)
    return problems


def archives_of(loader: str) -> list[DatasetFacts]:
    """The published archives read by ``loader`` (Omniglot: background, evaluation, small1)."""
    return [f for f in FACTS.values() if f.loader == loader]


def _summary(alphabets: int, classes: int, images: int) -> str:
    return f"{alphabets} alphabets, {classes:,} characters, {images:,} images"


def recognise_archive(loader: str, root: Path, m: Manifest, digest: str | None) -> tuple[
        DatasetFacts, str]:
    """Which published archive of ``loader`` the copy ``m`` at ``root`` is, and how it was told.

    A zip whose sha256 (``digest``) is a published one is that archive. Otherwise the alphabets
    decide: each published Omniglot archive has its own set of alphabet names (background and
    evaluation share none; small1 is 5 of the background's 30), so a copy whose alphabet names
    are exactly one archive's is that archive, whatever its character and image counts (the
    check then lists those). A copy that matches none is a DataError naming the facts compared.
    """
    archives = archives_of(loader)
    for f in archives:
        if digest is not None and f.zip_sha256 == digest:
            return f, "by its sha256"
    alphabets = {c.split("/")[0] for c in m.classes}
    for f in archives:
        if alphabets == set(f.alphabets):
            return f, f"by its {len(alphabets)} alphabets"
    known = "; ".join(f"{f.name}: {_summary(len(f.alphabets), f.classes, f.images)}"
                      for f in archives)
    raise DataError(
        f"cannot tell which published {loader} archive {root} is: neither its sha256 nor its "
        f"set of alphabet names is one of theirs (it has "
        f"{_summary(len(alphabets), len(m.classes), len(m))}; {known}); to list its "
        f"differences from one, name it, e.g. oodml datasets check {archives[0].name} "
        f"--root {root}"
    )


def check_dataset(name: str, root: str | os.PathLike) -> CheckReport:
    """Compare the copy of ``name`` at ``root`` with the published facts.

    ``name`` may be a loader published as several archives (``omniglot``): the archive is then
    recognised from the copy (:func:`recognise_archive`) and named in a note. A layout the
    loader cannot read is reported as a problem (its one-line message), not raised; an unknown
    ``name`` raises ConfigError and a root that does not exist a DataError (nothing to
    compare). Images are listed, not decoded.
    """
    several = len(archives_of(name)) > 1 and name not in FACTS
    f = None if several else dataset_info(name)
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"dataset root {root} does not exist; pass the folder or zip of {name}")
    loader = name if several else f.loader
    try:
        m = load_dataset(loader, root)
    except DataError as exc:
        return CheckReport(name, root, {}, (f"cannot read the layout: {exc}",))
    digest = None
    if Path(m.root).is_file() and any(a.zip_sha256 for a in archives_of(loader)):
        from oodml.hub import sha256_file

        digest = sha256_file(m.root)
    notes: list[str] = []
    if f is None:
        f, how = recognise_archive(loader, root, m, digest)
        notes.append(f"recognised as {f.name} ({how})")
    observed = {"classes": len(m.classes), "images": len(m)}
    problems = _differs("classes", observed["classes"], f.classes)
    problems += _differs("images", observed["images"], f.images)
    if f.alphabets:
        observed["alphabets"] = len({c.split("/")[0] for c in m.classes})
        problems += _omniglot_problems(m, f)
    elif f.name == "cub200":
        problems += _cub_problems(m)
    elif f.name == "sop":
        observed["superclasses"] = len(set(m.superclasses or ()))
        problems += _sop_problems(m, f)
    if f.zip_sha256 and digest is not None and digest != f.zip_sha256:
        notes.append(f"zip sha256 {digest} differs from the published {f.zip_sha256}")
    return CheckReport(f.name, root, observed, tuple(problems), tuple(notes))
