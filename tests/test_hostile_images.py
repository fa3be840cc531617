"""Hostile images and archives (issue 28): high bit depths, encrypted or unsupported zip members,
non-UTF-8 zip names, tall thin images, and image errors that name the image."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oodml.data import load_dataset
from oodml.data.manifest import (
    MAX_RESIZED_PIXELS,
    PLANNED_SHORT_SIDE,
    ZipSource,
    decode_image,
    resized_size,
)
from oodml.errors import DataError, short


def make_omniglot(root: Path, names: tuple[str, ...] = ("character01", "character02")) -> Path:
    """An extracted Omniglot-layout folder: images_background/Greek/<name>/<i>.png, 3 each."""
    rng = np.random.default_rng(0)
    base = root / "images_background" / "Greek"
    for name in names:
        (base / name).mkdir(parents=True)
        for i in range(3):
            px = rng.integers(0, 256, size=(20, 20), dtype=np.uint8)
            Image.fromarray(px).save(base / name / f"{i}.png")
    return root / "images_background"


def zip_folder(folder: Path, out: Path, method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(out, "w", compression=method) as zf:
        for p in sorted(folder.rglob("*.png")):
            zf.write(p, "images_background/" + p.relative_to(folder).as_posix())
    return out


def _central_entries(data: bytes) -> list[int]:
    """Offsets of the central-directory headers of a zip held in ``data``."""
    out, at = [], data.find(b"PK\x01\x02")
    while at >= 0:
        out.append(at)
        at = data.find(b"PK\x01\x02", at + 4)
    return out


def patch_member(path: Path, member: str, *, flag_or: int = 0, method: int | None = None) -> None:
    """Set bits in a member's general-purpose flag and/or its compression method, in both its
    local and central headers (what an encrypting or deflate64 zip tool writes there)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        local = zf.getinfo(member).header_offset
    name = member.encode()
    centrals = [c for c in _central_entries(bytes(data))
                if data[c + 46: c + 46 + len(name)] == name]
    assert len(centrals) == 1
    for flag_at, method_at in ((local + 6, local + 8), (centrals[0] + 8, centrals[0] + 10)):
        flag = struct.unpack_from("<H", data, flag_at)[0] | flag_or
        struct.pack_into("<H", data, flag_at, flag)
        if method is not None:
            struct.pack_into("<H", data, method_at, method)
    path.write_bytes(bytes(data))


def rename_member_bytes(path: Path, old: bytes, new: bytes) -> None:
    """Replace a name's bytes in place (same length), leaving the UTF-8 flag unset: what zip
    tools that store raw file-system names write."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert data.count(old) >= 2
    path.write_bytes(data.replace(old, new))


# --- item 4: 16-bit and float images are scaled, never clipped ---------------------------------


def _png16(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def test_4096_level_16bit_png_is_scaled_not_clipped():
    """Issue: 99.6% white with 17 levels left. 4096 levels spread over 0..65520 must keep 256
    grey levels, each the sample scaled by 255/65535 (PNG's rule), and no clipping."""
    a = (np.arange(4096, dtype=np.uint16) * 16).reshape(64, 64)
    data = _png16(a)
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    rgb = np.asarray(decode_image(data, "x.png"))
    assert rgb.shape == (64, 64, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    expected = np.rint(a * (255 / 65535)).astype(np.uint8)
    np.testing.assert_array_equal(rgb[..., 0], expected)
    assert len(np.unique(rgb)) == 256
    assert (rgb == 255).mean() < 0.01
    # the old decoder: everything above 255 became white
    old = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert (old == 255).mean() > 0.99


def test_16bit_big_endian_and_mode_i_are_scaled_like_16bit():
    a = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    big = Image.frombytes("I;16B", (16, 16), a.astype(">u2").tobytes())
    buf = io.BytesIO()
    big.save(buf, format="TIFF")
    got = np.asarray(decode_image(buf.getvalue(), "b.tif"))[..., 0]
    np.testing.assert_array_equal(got, np.arange(256, dtype=np.uint8).reshape(16, 16))
    as_i = Image.fromarray(a.astype(np.int32))
    assert as_i.mode == "I"
    buf = io.BytesIO()
    as_i.save(buf, format="TIFF")
    got = np.asarray(decode_image(buf.getvalue(), "i.tif"))[..., 0]
    np.testing.assert_array_equal(got, np.arange(256, dtype=np.uint8).reshape(16, 16))


def test_32bit_integer_image_beyond_16_bits_is_refused():
    img = Image.fromarray(np.array([[0, 70000]], dtype=np.int32))
    buf = io.BytesIO()
    img.save(buf, format="TIFF")
    with pytest.raises(DataError, match=r"root/w\.tif holds 'I' integer values in \[0, 70000\]"):
        decode_image(buf.getvalue(), "w.tif", "root")


def _float_tiff(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.float32)).save(buf, format="TIFF")
    return buf.getvalue()


def test_float_tiff_in_unit_range_is_scaled():
    """Issue: a float TIFF decoded 76% white (clipped); [0, 1] floats scale by 255."""
    a = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    data = _float_tiff(a)
    assert Image.open(io.BytesIO(data)).mode == "F"
    got = np.asarray(decode_image(data, "f.tif"))[..., 0]
    np.testing.assert_array_equal(got, np.rint(a.astype(np.float64) * 255).astype(np.uint8))
    assert len(np.unique(got)) == 256


@pytest.mark.parametrize("values", [[0.0, 300.0], [-1.0, 0.5], [0.0, float("nan")]])
def test_float_tiff_outside_unit_range_is_refused_in_one_line(tmp_path, values):
    data = _float_tiff(np.array([values] * 4))
    with pytest.raises(DataError, match=r"a/f\.tif is a float image") as err:
        decode_image(data, "a/f.tif")
    assert "\n" not in str(err.value) and "--skip-bad" in str(err.value)
    root = make_omniglot(tmp_path / "ds")
    (root / "Greek" / "character01" / "f.tif").write_bytes(data)
    assert load_dataset("omniglot", root, skip_bad=True).skipped == ("Greek/character01/f.tif",)


def test_16bit_rgb_png_is_scaled(tmp_path):
    """A 48-bit RGB PNG (written here by hand; PIL cannot write one): PIL hands it over as
    8-bit RGB holding each sample's high byte, i.e. scaled, not clipped."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, 65536, size=(8, 8, 3), dtype=np.uint16)
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in a)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    got = np.asarray(decode_image(png, "rgb48.png")).astype(int)
    assert np.abs(got - a / 257.0).max() <= 1.0


def test_16bit_images_in_a_dataset_decode_scaled(tmp_path):
    root = make_omniglot(tmp_path / "ds")
    a = (np.arange(4096, dtype=np.uint16) * 16).reshape(64, 64)
    Image.fromarray(a).save(root / "Greek" / "character01" / "deep.png")
    m = load_dataset("omniglot", root)
    img = np.asarray(m.load_image(m.paths.index("Greek/character01/deep.png")))
    assert (img == 255).mean() < 0.01 and len(np.unique(img)) == 256


# --- item 8: encrypted members and unsupported compression ------------------------------------


@pytest.mark.parametrize(
    ("patch", "why"),
    [({"flag_or": 0x1}, "is encrypted"), ({"method": 9}, "uses compression method 9")],
)
def test_unreadable_zip_member_is_named_and_skipped(tmp_path, patch, why):
    """Issue: "unexpected RuntimeError: Caught RuntimeError in DataLoader worker process 0"
    naming no file, and --skip-bad did not skip the member."""
    folder = make_omniglot(tmp_path / "src", names=("character01", "character02",
                                                    "character03"))
    z = zip_folder(folder, tmp_path / "om.zip")
    member = "images_background/Greek/character02/1.png"
    patch_member(z, member, **patch)
    with zipfile.ZipFile(z) as zf, pytest.raises((RuntimeError, NotImplementedError)):
        zf.read(member)  # what zipfile itself does with it
    with pytest.raises(DataError) as err:
        load_dataset("omniglot", z)
    msg = str(err.value)
    assert "\n" not in msg and "Greek/character02/1.png" in msg and why in msg
    assert "--skip-bad" in msg
    m = load_dataset("omniglot", z, skip_bad=True)
    assert m.skipped == ("Greek/character02/1.png",)
    assert m.class_counts["Greek/character02"] == 2
    # the read-time check, for a source used without loading (e.g. a worker's copy)
    with pytest.raises(OSError, match=why):
        ZipSource(z, "images_background/").read("Greek/character02/1.png")


# --- item 6 (zip names): zip and folder agree on non-UTF-8 names ------------------------------


def test_zip_name_without_utf8_flag_is_decoded_as_utf8_like_a_folder(tmp_path):
    """Raw UTF-8 bytes without the UTF-8 flag (Info-ZIP on Linux writes such names) were read
    as cp437 ("characterÃ©"); they now give the class name a folder of that name gives."""
    ascii_name, real = "characterXX", "character\u00e9"
    folder = make_omniglot(tmp_path / "src", names=(ascii_name, "character02"))
    z = zip_folder(folder, tmp_path / "om.zip")
    rename_member_bytes(z, ascii_name.encode(), real.encode("utf-8")[:11])
    with zipfile.ZipFile(z) as zf:
        assert not any(i.flag_bits & 0x800 for i in zf.infolist())
        mojibake = real.encode("utf-8").decode("cp437")
        assert any(mojibake in n for n in zf.namelist())  # what zipfile alone makes of it
    from_zip = load_dataset("omniglot", z)
    os.rename(folder / "Greek" / ascii_name, folder / "Greek" / real)
    from_folder = load_dataset("omniglot", tmp_path / "src")
    assert f"Greek/{real}" in from_zip.classes
    assert from_zip.classes == from_folder.classes
    assert from_zip.fingerprint == from_folder.fingerprint
    i = from_zip.paths.index(f"Greek/{real}/0.png")
    assert from_zip.load_image(i).size == (20, 20)


def test_zip_name_that_is_not_utf8_is_refused_like_a_folder(tmp_path):
    """Issue: "charact\\xe9r04" was read as cp437 ("charactΘr04") from a zip, refused from a
    folder. Both now give the same one-line refusal naming the raw bytes."""
    folder = make_omniglot(tmp_path / "src", names=("characXer04", "character02"))
    z = zip_folder(folder, tmp_path / "om.zip")
    rename_member_bytes(z, b"characXer04", b"charac\xe9er04")
    with pytest.raises(DataError) as from_zip:
        load_dataset("omniglot", z)
    os.rename(folder / "Greek" / "characXer04",
              folder / "Greek" / os.fsdecode(b"charac\xe9er04"))
    with pytest.raises(DataError) as from_folder:
        load_dataset("omniglot", tmp_path / "src")
    for err in (from_zip, from_folder):
        msg = str(err.value)
        assert "\n" not in msg and "charac\\xe9er04" in msg and "is not valid UTF-8" in msg
    assert str(from_zip.value).split(" under ")[0] == str(from_folder.value).split(" under ")[0]


# --- item 11: tall, thin images ------------------------------------------------------------


def test_resize_plan_matches_torchvision():
    import torch
    from torchvision import transforms as T

    for w, h in ((1, 300), (300, 7), (640, 480), (5, 5)):
        out = T.Resize(64)(torch.zeros(3, h, w))
        assert resized_size(w, h, 64) == (out.shape[2], out.shape[1])


def test_tall_thin_image_is_refused_after_the_resize_plan(tmp_path):
    """Issue: a 1 x 20000 PNG passed the pixel guard and the resize made it 256 x 5,120,000."""
    root = make_omniglot(tmp_path / "ds")
    Image.new("L", (1, 20000), 128).save(root / "Greek" / "character01" / "thin.png")
    assert resized_size(1, 20000, PLANNED_SHORT_SIDE)[1] * 256 > MAX_RESIZED_PIXELS
    m = load_dataset("omniglot", root)
    i = m.paths.index("Greek/character01/thin.png")
    assert m.load_image(i).size == (1, 20000)  # decoding alone is fine
    with pytest.raises(DataError) as err:
        m.load_image(i, resize_to=256)
    msg = str(err.value)
    assert "\n" not in msg and "thin.png" in msg and "256 x 5120000" in msg
    skipped = load_dataset("omniglot", root, skip_bad=True)
    assert skipped.skipped == ("Greek/character01/thin.png",)


def test_tall_thin_image_is_a_one_line_error_in_feature_extraction(tmp_path):
    from oodml.features import get_features

    root = make_omniglot(tmp_path / "ds")
    Image.new("L", (1, 20000), 128).save(root / "Greek" / "character01" / "thin.png")
    m = load_dataset("omniglot", root)
    with pytest.raises(DataError) as err:
        get_features(m, "efficientnet-lite0", cache_dir=tmp_path / "c", num_workers=0)
    assert "thin.png" in str(err.value) and "\n" not in str(err.value)
    ok = load_dataset("omniglot", root, skip_bad=True)
    fs = get_features(ok, "efficientnet-lite0", cache_dir=tmp_path / "c", num_workers=0)
    assert fs.features.shape == (6, 1280)


def test_training_images_report_a_bad_image_in_one_line(tmp_path):
    """Full-backbone training decodes in DataLoader workers: the error names the image instead
    of "Caught DataError in DataLoader worker process 0" and a traceback."""
    import torch

    from oodml.train.images import ImageInputs

    root = make_omniglot(tmp_path / "ds")
    Image.new("L", (1, 20000), 128).save(root / "Greek" / "character01" / "thin.png")
    m = load_dataset("omniglot", root)
    inputs = ImageInputs(m, np.arange(len(m)), np.zeros(len(m), dtype=np.int64),
                         backbone="resnet50", size=64, num_workers=1)
    with pytest.raises(DataError) as err:
        list(inputs.eval_batches(8, torch.device("cpu")))
    msg = str(err.value)
    assert "\n" not in msg and "thin.png" in msg and "Caught" not in msg


# --- unclear messages: image errors name the image; long values are cut ---------------------


def test_image_error_names_the_path_not_a_buffer(tmp_path):
    root = make_omniglot(tmp_path / "ds")
    (root / "Greek" / "character01" / "junk.png").write_bytes(b"not an image at all")
    m = load_dataset("omniglot", root)
    with pytest.raises(DataError) as err:
        m.load_image(m.paths.index("Greek/character01/junk.png"))
    msg = str(err.value)
    assert "BytesIO" not in msg and "0x" not in msg
    assert str(root / "Greek" / "character01" / "junk.png") in msg


def test_short_cuts_long_values():
    assert short("abc") == "'abc'"
    long = "x" * 100_000
    cut = short(long)
    assert len(cut) < 120 and cut.startswith("'xxx") and "(100000 characters)" in cut
