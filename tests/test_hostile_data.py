"""Hostile datasets (issue 11): changed pixels under the same names, symlink loops, FIFOs named
like images, oversized zip members and images, non-UTF-8 names. Each test failed before its fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oodml.data import load_dataset
from oodml.data.manifest import MAX_IMAGE_BYTES, content_sha256
from oodml.errors import DataError
from oodml.features import cache_paths, get_features

REPO = Path(__file__).resolve().parents[1]


def make_folder(root: Path, n_classes: int = 2, per_class: int = 3, fmt: str = "bmp") -> None:
    rng = np.random.default_rng(0)
    for c in range(n_classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            px = rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
            Image.fromarray(px).save(root / f"c{c}" / f"i{i}.{fmt}")


def invert_in_place(root: Path, keep_times: bool) -> None:
    """Invert every image, keeping names, sizes (BMP) and, with keep_times, the old mtimes."""
    for path in sorted(root.rglob("*.bmp")):
        st = path.stat()
        inverted = 255 - np.asarray(Image.open(path).convert("RGB"))
        Image.fromarray(inverted).save(path)
        assert path.stat().st_size == st.st_size
        if keep_times:
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("keep_times", [False, True])
def test_changed_pixels_get_a_new_cache_entry_and_new_features(tmp_path, keep_times):
    root, cache = tmp_path / "ds", tmp_path / "cache"
    make_folder(root)
    before = load_dataset("imagefolder", root)
    fs1 = get_features(before, "efficientnet-lite0", cache_dir=cache, num_workers=0)
    invert_in_place(root, keep_times)
    after = load_dataset("imagefolder", root)
    assert after.fingerprint == before.fingerprint  # names-only identity is unchanged
    assert after.content_id != before.content_id
    fs2 = get_features(after, "efficientnet-lite0", cache_dir=cache, num_workers=0)
    assert not np.allclose(fs1.features, fs2.features)
    entries = sorted((cache / "features" / "efficientnet-lite0").glob("*.npz"))
    assert len(entries) == 2
    fresh = get_features(
        after, "efficientnet-lite0", cache_dir=tmp_path / "fresh", num_workers=0
    )
    np.testing.assert_array_equal(fs2.features, fresh.features)


def test_inverted_copy_under_the_same_names_is_not_served_from_cache(tmp_path):
    """The issue's reproduction: a copy of A with every image inverted."""
    a, b, cache = tmp_path / "A", tmp_path / "B", tmp_path / "cache"
    make_folder(a)
    shutil.copytree(a, b, copy_function=shutil.copy2)
    invert_in_place(b, keep_times=True)
    ma, mb = load_dataset("imagefolder", a), load_dataset("imagefolder", b)
    fa = get_features(ma, "efficientnet-lite0", cache_dir=cache, num_workers=0)
    fb = get_features(mb, "efficientnet-lite0", cache_dir=cache, num_workers=0)
    assert ma.fingerprint == mb.fingerprint and ma.content_id != mb.content_id
    assert not np.allclose(fa.features, fb.features)
    assert content_sha256(ma) != content_sha256(mb)


def test_zip_content_id_follows_member_crc(tmp_path):
    src = tmp_path / "src"
    make_folder(src, fmt="png")

    def zip_of(folder: Path, out: Path) -> Path:
        with zipfile.ZipFile(out, "w") as zf:
            for p in sorted(folder.rglob("*.png")):
                zf.write(p, "images_background/a/" + p.relative_to(folder).as_posix())
        return out

    first = load_dataset("omniglot", zip_of(src, tmp_path / "one.zip"))
    same = load_dataset("omniglot", zip_of(src, tmp_path / "same.zip"))
    img = src / "c0" / "i0.png"
    px = np.asarray(Image.open(img)).copy()
    px[0, 0, 0] ^= 1
    Image.fromarray(px).save(img)
    changed = load_dataset("omniglot", zip_of(src, tmp_path / "two.zip"))
    assert first.content_id == same.content_id
    assert changed.fingerprint == first.fingerprint and changed.content_id != first.content_id


def test_cache_paths_include_the_content_id(tmp_path):
    root = tmp_path / "ds"
    make_folder(root)
    m = load_dataset("imagefolder", root)
    fs = get_features(m, "efficientnet-lite0", cache_dir=tmp_path / "c", num_workers=0)
    npz, meta = cache_paths(tmp_path / "c", m.fingerprint, fs.extractor, fs.weights_sha256,
                            m.content_id)
    assert npz.is_file() and m.content_id[:32] in npz.name and fs.content_id == m.content_id


def run_guarded(code: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python so a hang fails the test instead of blocking the suite."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_symlink_up_to_parent_is_skipped_and_reported(tmp_path):
    root = tmp_path / "ds"
    make_folder(root, n_classes=2, per_class=6)
    os.symlink("..", root / "c0" / "up")
    proc = run_guarded(
        f"""
        from oodml.data import load_dataset
        m = load_dataset("imagefolder", {str(root)!r})
        print(len(m), sorted(m.class_counts.items()), m.skipped_links)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "12 [('c0', 6), ('c1', 6)]" in proc.stdout
    assert "c0/up -> .. (revisits a folder)" in proc.stdout


def test_two_links_to_self_do_not_hang(tmp_path):
    root = tmp_path / "ds"
    make_folder(root, n_classes=2, per_class=3)
    os.symlink(".", root / "c1" / "a")
    os.symlink(".", root / "c1" / "b")
    os.symlink(str(tmp_path), root / "c0" / "out")
    proc = run_guarded(
        f"""
        from oodml.data import load_dataset
        m = load_dataset("imagefolder", {str(root)!r})
        print(len(m), m.skipped_links)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("6 ")
    assert "c1/a -> . (revisits a folder)" in proc.stdout
    assert "c1/b -> . (revisits a folder)" in proc.stdout
    assert "(leaves the dataset root)" in proc.stdout


def test_link_inside_root_to_unvisited_folder_is_followed(tmp_path):
    root = tmp_path / "ds"
    make_folder(root, n_classes=2, per_class=3)
    make_folder(root / ".store", n_classes=1, per_class=2)
    os.symlink(".store/c0", root / "linked")
    m = load_dataset("imagefolder", root)
    assert m.class_counts == {"c0": 3, "c1": 3, "linked": 2}
    assert m.skipped_links == ()


@pytest.mark.parametrize("skip_bad", [False, True])
def test_fifo_named_like_an_image_is_never_opened(tmp_path, skip_bad):
    root = tmp_path / "ds"
    make_folder(root, n_classes=2, per_class=3)
    os.mkfifo(root / "c0" / "x.png")
    proc = run_guarded(
        f"""
        from oodml.data import load_dataset
        from oodml.data.manifest import DirSource
        m = load_dataset("imagefolder", {str(root)!r}, skip_bad={skip_bad})
        print(len(m), "c0/x.png" in m.paths)
        try:
            DirSource(m.root).read("c0/x.png")
        except OSError as exc:
            print("refused:", exc)
        """,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("6 False")
    assert "is not a regular file" in proc.stdout


def test_zip_member_declaring_a_huge_size_is_refused_before_reading(tmp_path):
    """A 2 GiB member of zeros compresses to ~2 MB; its declared size is checked first."""
    big = tmp_path / "big.zip"
    src = tmp_path / "src"
    make_folder(src, fmt="png")
    with zipfile.ZipFile(big, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*.png")):
            zf.write(p, "images_background/a/" + p.relative_to(src).as_posix())
        with zf.open("images_background/a/c1/huge.png", "w", force_zip64=True) as out:
            chunk = bytes(2**20)
            for _ in range((MAX_IMAGE_BYTES >> 20) + 1):
                out.write(chunk)
    m = load_dataset("omniglot", big)
    i = m.paths.index("a/c1/huge.png")
    with pytest.raises(DataError, match="huge.png.*declares") as err:
        m.read_bytes(i)
    assert "\n" not in str(err.value)
    skipped = load_dataset("omniglot", big, skip_bad=True)
    assert "a/c1/huge.png" in skipped.skipped


def test_image_with_too_many_pixels_is_refused_before_decoding(tmp_path):
    """A PNG header declaring 30000 x 30000 pixels (a few hundred bytes on disk)."""
    root = tmp_path / "ds"
    make_folder(root, fmt="png")
    bomb = Image.new("1", (30000, 30000))
    bomb.save(root / "c0" / "bomb.png", optimize=True)
    assert (root / "c0" / "bomb.png").stat().st_size < 200_000
    m = load_dataset("imagefolder", root)
    with pytest.raises(DataError, match="bomb.png") as err:
        m.load_image(m.paths.index("c0/bomb.png"))
    assert "\n" not in str(err.value)


def test_non_utf8_class_folder_is_a_one_line_error(tmp_path):
    root = tmp_path / "ds"
    make_folder(root)
    bad = os.fsdecode(b"caf\xe9")
    os.rename(root / "c1", root / bad)
    with pytest.raises(DataError, match="not valid UTF-8") as err:
        load_dataset("imagefolder", root)
    assert "\n" not in str(err.value) and "caf\\xe9" in str(err.value)
