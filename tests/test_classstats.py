"""Class statistics: pooled Gaussians, incremental updates, the two set distances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_fid.fid_score import calculate_frechet_distance as pfid

from oodml.data import load_dataset
from oodml.errors import ConfigError
from oodml.stats.class_stats import ClassStats, PooledGaussian
from oodml.stats.gaussian import fit_gaussian, frechet_distance
from oodml.stats.means_distance import MeansDistance
from oodml.stats.modes import distance_within
from oodml.stats.samples_distance import SamplesDistance

from reference import frechet_rows


def make_data(seed: int, n: int = 400, d: int = 24, c: int = 10):
    rng = np.random.default_rng(seed)
    lab_idx = np.concatenate([np.arange(c), np.arange(c), rng.integers(0, c, n - 2 * c)])
    rng.shuffle(lab_idx)
    offsets = rng.standard_normal((c, d)) * 2 + 50.0
    x = (rng.standard_normal((n, d)) + offsets[lab_idx]).astype(np.float32)
    labels = [f"cls{i:02d}" for i in lab_idx]
    return x, labels


def rows_of(x: np.ndarray, labels: list[str], classes) -> np.ndarray:
    return x[np.isin(labels, list(classes))].astype(np.float64)


def test_from_features_counts_and_means() -> None:
    x, labels = make_data(0)
    st_ = ClassStats.from_features(x, labels)
    assert st_.classes == tuple(sorted(set(labels)))
    for i, c in enumerate(st_.classes):
        r = rows_of(x, labels, [c])
        assert st_.counts[i] == len(r)
        np.testing.assert_allclose(st_.means[i], r.mean(0), rtol=1e-12)
        np.testing.assert_allclose(st_.gram(c), (r - st_.center).T @ (r - st_.center), rtol=1e-10)
    assert st_.means.dtype == np.float64


def test_pooled_equals_direct_fit() -> None:
    x, labels = make_data(1)
    st_ = ClassStats.from_features(x, labels)
    chosen = ["cls01", "cls04", "cls07"]
    p = st_.pooled(chosen)
    mu, sigma = fit_gaussian(rows_of(x, labels, chosen))
    assert p.n == len(rows_of(x, labels, chosen))
    np.testing.assert_allclose(p.mean, mu, rtol=1e-12)
    np.testing.assert_allclose(p.cov, sigma, rtol=1e-9, atol=1e-12)
    assert p.classes == tuple(chosen)


@settings(max_examples=30, deadline=None)
@given(ops=st.lists(st.integers(0, 9), min_size=1, max_size=40), cache=st.sampled_from([0, 5000]))
def test_incremental_equals_recomputation(ops: list[int], cache: int) -> None:
    x, labels = make_data(2)
    st_ = ClassStats.from_features(x, labels, gram_cache_bytes=cache)
    p = PooledGaussian(st_)
    members: set[int] = set()
    for i in ops:
        if i in members:
            p.remove(i)
            members.remove(i)
        else:
            p.add(st_.classes[i])
            members.add(i)
    assert p.members == members
    if len(members) >= 1:
        r = rows_of(x, labels, [st_.classes[i] for i in members])
        assert p.n == len(r)
        np.testing.assert_allclose(p.mean, r.mean(0), rtol=1e-11)
        if len(r) >= 2:
            np.testing.assert_allclose(p.cov, np.cov(r, rowvar=False), rtol=1e-8, atol=1e-10)
    else:
        assert p.n == 0
        with pytest.raises(ConfigError):
            _ = p.mean


def test_samples_distance_equals_usual_fid() -> None:
    x, labels = make_data(3, n=1200, d=20)
    st_ = ClassStats.from_features(x, labels)
    a, b = st_.classes[:4], st_.classes[4:]
    m1, s1 = fit_gaussian(rows_of(x, labels, a))
    m2, s2 = fit_gaussian(rows_of(x, labels, b))
    want = pfid(m1, s1, m2, s2)
    assert distance_within(st_, a, b, mode="samples") == pytest.approx(want, rel=1e-6)
    assert distance_within(st_, a, b, mode="samples") == pytest.approx(
        frechet_distance(m1, s1, m2, s2), rel=1e-9
    )


@pytest.mark.parametrize("eps", [1e-8, 1e-4])
def test_class_means_three_routes_agree(eps: float) -> None:
    rng = np.random.default_rng(4)
    c, d = 30, 160
    labels = [f"k{i:02d}" for i in range(c) for _ in range(3)]
    x = rng.standard_normal((3 * c, d)) * rng.uniform(0.1, 2, d) + 7.0
    st_ = ClassStats.from_features(x, labels)
    md = st_.means_distance(eps)
    assert md.rank == c - 1
    for trial in range(3):
        perm = rng.permutation(c)
        ia, ib = np.sort(perm[: 5 + 6 * trial]), np.sort(perm[5 + 6 * trial :])
        want = frechet_rows(st_.means[ia], st_.means[ib], eps)
        fast = md.distance(ia, ib)
        names = [st_.classes[i] for i in ia]
        via_stats = distance_within(st_, names, ib, mode="class-means", eps=eps)
        assert fast == pytest.approx(want, rel=1e-10)
        assert via_stats == pytest.approx(want, rel=1e-10)


def test_class_means_with_more_classes_than_dimensions() -> None:
    """SOP-like C > D: the centred means are the coordinates (no C x C Gram matrix)."""
    rng = np.random.default_rng(14)
    c, d = 90, 12
    labels = [f"k{i:02d}" for i in range(c) for _ in range(2)]
    x = rng.standard_normal((2 * c, d)) * rng.uniform(0.5, 2, d) + 3.0
    st_ = ClassStats.from_features(x, labels)
    md = st_.means_distance(1e-8)
    assert md.coords.shape == (c, d) and md.rank == d
    for trial in range(3):
        perm = rng.permutation(c)
        ia, ib = np.sort(perm[: 20 + 15 * trial]), np.sort(perm[20 + 15 * trial :])
        want = frechet_rows(st_.means[ia], st_.means[ib], 1e-8)
        assert md.distance(ia, ib) == pytest.approx(want, rel=1e-10)


def test_class_means_default_eps_matches_pytorch_fid() -> None:
    rng = np.random.default_rng(5)
    means = rng.standard_normal((30, 64)) * 0.5
    labels = [i for i in range(30) for _ in range(2)]
    x = np.repeat(means, 2, axis=0) + rng.standard_normal((60, 64)) * 0.01
    st_ = ClassStats.from_features(x, labels)
    ia, ib = np.arange(12), np.arange(12, 30)
    m1, s1 = fit_gaussian(st_.means[ia])
    m2, s2 = fit_gaussian(st_.means[ib])
    eye = np.eye(64) * 1e-8
    want = pfid(m1, s1 + eye, m2, s2 + eye)
    assert distance_within(st_, ia, ib) == pytest.approx(want, rel=1e-6)
    assert MeansDistance(st_.means).distance(ia, ib) == pytest.approx(want, rel=1e-6)


def test_samples_evaluator_moves_and_peeks() -> None:
    x, labels = make_data(6, n=900, d=16, c=12)
    st_ = ClassStats.from_features(x, labels)
    sd = SamplesDistance(st_, st_.classes[:6], st_.classes[6:])
    rng = np.random.default_rng(0)
    for _ in range(15):
        c = st_.classes[int(rng.integers(0, 12))]
        to = [None, "train", "test"][int(rng.integers(0, 3))]
        tr, te = set(sd.train) - {c}, set(sd.test) - {c}
        if to == "train":
            tr.add(c)
        elif to == "test":
            te.add(c)
        if len(tr) < 1 or len(te) < 1:
            continue
        expected = distance_within(st_, sorted(tr), sorted(te), mode="samples")
        before = sd.distance()
        assert sd.peek(c, to) == pytest.approx(expected, rel=1e-9)
        assert sd.distance() == before
        snapshot = sd.copy()
        if to is None:
            sd.remove(c)
        else:
            sd.move(c, to)
        assert sd.distance() == pytest.approx(expected, rel=1e-9)
        assert snapshot.distance() == before
        assert set(sd.train) == tr and set(sd.test) == te
        assert set(sd.removed) == set(st_.classes) - tr - te
        assert sd.side_of(c) == to


def test_real_omniglot_pixels(omniglot_zip) -> None:
    manifest = load_dataset("omniglot", omniglot_zip)
    idx = manifest.indices_of(manifest.classes[:24])
    feats = []
    for i in idx:
        img = np.asarray(manifest.load_image(int(i)).convert("L"), dtype=np.float64) / 255.0
        feats.append(img[:98, :98].reshape(14, 7, 14, 7).mean((1, 3)).ravel())
    x = np.array(feats, dtype=np.float32)
    labels = [manifest.labels[int(i)] for i in idx]
    st_ = ClassStats.from_features(x, labels)
    assert len(st_.classes) == 24 and st_.counts.sum() == len(idx)
    a, b = st_.classes[:12], st_.classes[12:]
    ia, ib = st_.indices(a), st_.indices(b)
    eye = np.eye(x.shape[1]) * 1e-8
    m1, s1 = fit_gaussian(st_.means[ia])
    m2, s2 = fit_gaussian(st_.means[ib])
    want = pfid(m1, s1 + eye, m2, s2 + eye)
    assert distance_within(st_, a, b, mode="class-means") == pytest.approx(want, rel=1e-6)
    assert st_.means_distance().distance(ia, ib) == pytest.approx(want, rel=1e-6)
    m1, s1 = fit_gaussian(rows_of(x, labels, a))
    m2, s2 = fit_gaussian(rows_of(x, labels, b))
    want = pfid(m1, s1, m2, s2)
    assert distance_within(st_, a, b, mode="samples") == pytest.approx(want, rel=1e-6)


def test_bad_inputs() -> None:
    x, labels = make_data(7)
    st_ = ClassStats.from_features(x, labels)
    with pytest.raises(ConfigError, match="unknown class"):
        distance_within(st_, ["nope", "cls01"], ["cls02", "cls03"])
    with pytest.raises(ConfigError, match="at least 2"):
        distance_within(st_, ["cls00"], ["cls02", "cls03"])
    with pytest.raises(ConfigError, match="mode"):
        distance_within(st_, ["cls00", "cls01"], ["cls02", "cls03"], mode="pixels")
    with pytest.raises(ConfigError, match="labels"):
        ClassStats.from_features(x, labels[:-1])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        ClassStats.from_features(bad, labels)
    p = st_.pooled(["cls00"])
    with pytest.raises(ConfigError):
        p.add("cls00")
    with pytest.raises(ConfigError):
        p.remove("cls01")
    with pytest.raises(ConfigError):
        SamplesDistance(st_, ["cls00", "cls01"], ["cls01", "cls02"])


@pytest.fixture(scope="module")
def tiny_folders(omniglot_zip, tmp_path_factory):
    """6 Omniglot classes x 4 images as ds/<class>/<png>, and d1, d2: 3 classes each, flat."""
    import zipfile

    base = tmp_path_factory.mktemp("fid")
    with zipfile.ZipFile(omniglot_zip) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".png"))
        by_class: dict[str, list[str]] = {}
        for n in names:
            by_class.setdefault("_".join(n.split("/")[-3:-1]), []).append(n)
        for k, cls in enumerate(sorted(by_class)[:6]):
            for n in by_class[cls][:4]:
                for target in (base / "ds" / cls, base / ("d1" if k < 3 else "d2")):
                    target.mkdir(parents=True, exist_ok=True)
                    (target / n.rsplit("/", 1)[1]).write_bytes(zf.read(n))
    return base


def printed_value(out: str) -> float:
    return float(out.strip().splitlines()[-1].rsplit(":", 1)[1])


def test_cli_dataset_modes_match_api(tiny_folders, cli) -> None:
    from oodml.data import load_dataset
    from oodml.features import get_features

    root, cache = tiny_folders / "ds", tiny_folders / "cache"
    classes = sorted(p.name for p in root.iterdir())
    (tiny_folders / "b.txt").write_text("# side B\n" + "\n".join(classes[3:]) + "\n\n")
    common = ["fid", "--dataset", "imagefolder", "--root", str(root), "--cache", str(cache),
              "--extractor", "efficientnet-lite0"]
    common += [
        "--num-workers",
        "0",
        "--a",
        ",".join(classes[:3]),
        "--b-file",
        str(tiny_folders / "b.txt"),
    ]
    values = {}
    for mode in ("class-means", "samples"):
        code, out, err = cli(*common, "--mode", mode)
        assert code == 0, err
        values[mode] = printed_value(out)
    fs = get_features(load_dataset("imagefolder", root), "efficientnet-lite0", cache_dir=cache)
    st_ = ClassStats.from_features(fs.features, fs.labels)
    for mode, got in values.items():
        want = distance_within(st_, classes[:3], classes[3:], mode=mode)
        assert got == pytest.approx(want, rel=1e-8)
    code, _, err = cli(*common[:-4], "--a", "nope,x", "--b", classes[0])
    assert code == 2 and "not in dataset" in err
    code, _, err = cli(*common, "--mode", "pixels")
    assert code == 2 and "mode='pixels' is not one of" in err


def test_cli_two_folders_match_api(tiny_folders, cli) -> None:
    from oodml.features import get_features
    from oodml.stats.fid import folder_manifest
    from oodml.stats.gaussian import frechet_distance_samples

    d1, d2, cache = tiny_folders / "d1", tiny_folders / "d2", tiny_folders / "cache"
    code, out, err = cli("fid", str(d1), str(d2), "--cache", str(cache), "--num-workers", "0",
                         "--extractor", "efficientnet-lite0")
    assert code == 0, err
    x1, x2 = (
        get_features(folder_manifest(d), "efficientnet-lite0", cache_dir=cache).features
        for d in (d1, d2)
    )
    assert printed_value(out) == pytest.approx(frechet_distance_samples(x1, x2), rel=1e-8)
    assert printed_value(out) > 0
    code, _, err = cli("fid", str(d1))
    assert code == 2 and "two image folders" in err
    code, _, err = cli("fid", str(d1), str(d2), "--mode", "class-means")
    assert code == 2 and "no class folders found" in err


def test_cli_class_means_of_two_class_folders_equals_the_dataset_route(
    tiny_folders, tmp_path, cli
) -> None:
    """Two folders of class subfolders in class-means mode give the class-means distance of the
    same classes named as two lists of one dataset; --skip-bad leaves a corrupt image out."""
    import shutil

    classes = sorted(p.name for p in (tiny_folders / "ds").iterdir())
    for side, names in (("A", classes[:3]), ("B", classes[3:])):
        for c in names:
            shutil.copytree(tiny_folders / "ds" / c, tmp_path / side / c)
    cache = tmp_path / "cache"
    common = ["--mode", "class-means", "--cache", str(cache), "--num-workers", "0",
              "--extractor", "efficientnet-lite0"]
    code, out, err = cli("fid", str(tmp_path / "A"), str(tmp_path / "B"), *common)
    assert code == 0, err
    assert "[3 classes]" in out
    code, ref, err = cli("fid", "--dataset", "imagefolder", "--root", str(tiny_folders / "ds"),
                         "--a", ",".join(classes[:3]), "--b", ",".join(classes[3:]), *common)
    assert code == 0, err
    assert printed_value(out) == pytest.approx(printed_value(ref), rel=1e-5)
    (tmp_path / "B" / classes[3] / "broken.png").write_bytes(b"not a png")
    code, _, err = cli("fid", str(tmp_path / "A"), str(tmp_path / "B"), *common)
    assert code == 2 and "broken.png" in err
    code, out, err = cli("fid", str(tmp_path / "A"), str(tmp_path / "B"), *common, "--skip-bad")
    assert code == 0 and "skipped unreadable image" in err and "broken.png" in err
    assert printed_value(out) == pytest.approx(printed_value(ref), rel=1e-5)


def test_cli_samples_fid_of_two_folders_skips_a_corrupt_image_with_skip_bad(
    tiny_folders, tmp_path, cli
) -> None:
    """--skip-bad works in the default samples mode too: the corrupt file is listed and the
    value is that of the folders without it."""
    import shutil

    classes = sorted(p.name for p in (tiny_folders / "ds").iterdir())
    shutil.copytree(tiny_folders / "ds" / classes[0], tmp_path / "A")
    shutil.copytree(tiny_folders / "ds" / classes[1], tmp_path / "B")
    common = ["--cache", str(tmp_path / "cache"), "--num-workers", "0",
              "--extractor", "efficientnet-lite0"]
    code, ref, err = cli("fid", str(tmp_path / "A"), str(tmp_path / "B"), *common)
    assert code == 0, err
    (tmp_path / "B" / "broken.png").write_bytes(b"not a png")
    code, _, err = cli("fid", str(tmp_path / "A"), str(tmp_path / "B"), *common)
    assert code == 2 and "broken.png" in err
    code, out, err = cli("fid", str(tmp_path / "A"), str(tmp_path / "B"), *common, "--skip-bad")
    assert code == 0, err
    assert "skipped unreadable image" in err and "broken.png" in err
    assert printed_value(out) == pytest.approx(printed_value(ref), rel=1e-5)
