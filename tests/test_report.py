"""Reports: table values against hand computations, figure content, HTML embedding, errors."""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from oodml.report.build import build_report
from oodml.report.embedding import embedding_figure, pca_2d
from oodml.report.progression import progression_figure
from oodml.report.tables import (
    kendall_tau,
    label_series,
    normalised_distance,
    rank_table,
    summary_table,
    trapezoid_auc,
)
from oodml.results import ResultsError, load_results, select_metrics, validate
from oodml.splits.splitfile import Split, SplitFile
from oodml_cli import main

SHA = "ab" * 32
DIST = {1: 10.0, 2: 20.0, 3: 40.0}
# recall@1 per (method, split) -> (seed 0, seed 1); nmi is recall@1 / 2.
R1 = {
    ("A", 1): (0.8, 0.6), ("A", 2): (0.6, 0.5), ("A", 3): (0.4, 0.2),
    ("B", 1): (0.5, 0.7), ("B", 2): (0.6, 0.6), ("B", 3): (0.5, 0.3),
}
S2 = math.sqrt(2.0)


def _row(method, split, seed, metric, value, protocol="zeroshot", shots=0, sha=SHA, config="{}"):
    return {
        "splitfile_sha256": sha, "dataset": "omniglot", "split_id": split,
        "distance": DIST[split], "method": method, "config": config, "seed": seed,
        "protocol": protocol, "shots": shots, "metric": metric, "value": value,
        "std": float("nan") if protocol == "zeroshot" else 0.01,
        "n_episodes": 0 if protocol == "zeroshot" else 10, "wall_time_s": 1.0,
        "device": "cpu", "epochs": 2,
    }


def results_frame(fewshot: bool = False, seeds=(0, 1)) -> pd.DataFrame:
    rows = []
    for (m, split), vals in R1.items():
        for seed in seeds:
            v = vals[seed]
            rows.append(_row(m, split, seed, "recall@1", v))
            rows.append(_row(m, split, seed, "nmi", v / 2))
            if fewshot and m == "A":
                rows.append(_row(m, split, seed, "recall@1", v + 0.1, "fewshot", 5))
                rows.append(_row(m, split, seed, "nmi", v / 2 + 0.05, "fewshot", 5))
    return pd.DataFrame(rows)


def splitfile(start: int = 1) -> SplitFile:
    classes = [f"c{i}" for i in range(8)]
    ladder = [
        Split(id=1, distance=10.0, is_start=start == 1, train=tuple(classes[:4]),
              test=tuple(classes[4:])),
        Split(id=2, distance=20.0, is_start=start == 2, train=tuple(classes[:3] + classes[4:5]),
              test=tuple(classes[5:]), removed=(classes[3],)),
        Split(id=3, distance=40.0, is_start=start == 3, train=tuple(classes[:3]),
              test=tuple(classes[5:]), removed=tuple(classes[3:5])),
    ]
    return SplitFile(dataset_name="synthetic", dataset_fingerprint=None, class_counts=None,
                     extractor="none", weights_sha256=None, distance_mode="class-means",
                     procedure="hand", params={}, seed=0, ladder=ladder)


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    return label_series(validate(df))


# --- tables -------------------------------------------------------------------------------

def test_summary_table_matches_hand_computation():
    s = summary_table(labelled(results_frame()), ["recall@1"]).set_index("series")
    a, b = s.loc["A"], s.loc["B"]
    # A: easiest 0.8/0.6, hardest 0.4/0.2; drops 0.5 and 2/3; AUC on x = (0, 1/3, 1):
    #   seed0 = 1/3*(0.8+0.6)/2 + 2/3*(0.6+0.4)/2 = 17/30; seed1 = 1/3*1.1/2 + 2/3*0.7/2 = 12.5/30
    assert (a.easiest_split, a.hardest_split) == (1, 3)
    assert a.easiest_value == pytest.approx(0.7) and a.easiest_std == pytest.approx(0.2 / S2)
    assert a.hardest_value == pytest.approx(0.3) and a.hardest_std == pytest.approx(0.2 / S2)
    assert a.rel_drop == pytest.approx((0.5 + 2 / 3) / 2)
    assert a.rel_drop_std == pytest.approx((2 / 3 - 0.5) / S2)
    assert a.auc == pytest.approx((17 / 30 + 12.5 / 30) / 2)
    assert a.auc_std == pytest.approx((17 / 30 - 12.5 / 30) / S2)
    # B: drops 0 and 4/7; AUC seed0 = 1/3*1.1/2 + 2/3*1.1/2 = 0.55, seed1 = 1.3/6 + 0.9/3
    assert b.rel_drop == pytest.approx(2 / 7) and b.rel_drop_std == pytest.approx(4 / 7 / S2)
    assert b.auc == pytest.approx((0.55 + 1.3 / 6 + 0.3) / 2)
    assert (a.n_seeds, a.notes, b.notes) == (2, "", "")


def test_single_seed_has_no_std_and_is_noted():
    s = summary_table(labelled(results_frame(seeds=(0,))), ["recall@1"]).set_index("series")
    assert s.loc["A", "easiest_value"] == pytest.approx(0.8)
    assert math.isnan(s.loc["A", "easiest_std"]) and math.isnan(s.loc["A", "auc_std"])
    assert "single seed" in s.loc["A", "notes"]


def test_auc_normalisation_and_trapezoid():
    x = normalised_distance(np.array([5.0, 7.5, 15.0]), 5.0, 15.0)
    np.testing.assert_allclose(x, [0.0, 0.25, 1.0])
    assert trapezoid_auc(x, [1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert trapezoid_auc(x, [0.0, 0.5, 1.0]) == pytest.approx(0.25 * 0.25 + 0.75 * 0.75)
    # a series that is constant at c has AUC c whatever the raw distance scale
    df = results_frame()
    df["value"] = 0.37
    df["distance"] *= 1000.0
    s = summary_table(labelled(df), ["recall@1"])
    np.testing.assert_allclose(s["auc"], 0.37)


def test_kendall_tau_hand_cases_and_scipy():
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ties: x ties pair (1,2), y ties pair (2,3); 4 concordant -> 4 / sqrt(5 * 5)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    assert math.isnan(kendall_tau([1.0], [2.0]))
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, 9), rng.integers(0, 4, 9)
        ref = stats.kendalltau(x, y).statistic
        ours = kendall_tau(x, y)
        assert (math.isnan(ours) and math.isnan(ref)) or ours == pytest.approx(ref)


def test_rank_table_hand_case():
    df = labelled(results_frame())
    r = rank_table(df, "recall@1")  # means: split1 A .7 B .6; split2 A .55 B .6; split3 A .3 B .4
    assert r.start_split == 1 and "smallest id" in r.notes[0]
    t = r.table.set_index("split_id")
    assert list(t["rank A"]) == [1.0, 2.0, 2.0] and list(t["rank B"]) == [2.0, 1.0, 1.0]
    assert list(t["kendall_tau_vs_start"]) == [1.0, -1.0, -1.0]
    r2 = rank_table(df, "recall@1", start_split=2)
    assert list(r2.table["kendall_tau_vs_start"]) == [-1.0, 1.0, 1.0] and r2.notes == []
    assert list(r2.table["is_start"]) == [False, True, False]


def test_three_method_tau_uses_common_methods():
    df = results_frame()
    extra = []
    for split, v in {1: 0.1, 2: 0.9, 3: 0.5}.items():
        for seed in (0, 1):
            extra.append(_row("C", split, seed, "recall@1", v))
            extra.append(_row("C", split, seed, "nmi", v))
    r = rank_table(labelled(pd.concat([df, pd.DataFrame(extra)])), "recall@1")
    # start ranking A > B > C; split 2: C > B > A (tau -1); split 3: C > B > A (tau -1)
    # split 3 scores A .3, B .4, C .5 vs start A .7, B .6, C .1 -> all 3 pairs discordant
    assert list(r.table["rank C"]) == [3.0, 1.0, 1.0]
    np.testing.assert_allclose(r.table["kendall_tau_vs_start"], [1.0, -1.0, -1.0])


# --- figures ------------------------------------------------------------------------------

def _data_lines(ax):
    return [(ln.get_label(), ln.get_linestyle()) for ln in ax.get_lines()]


def test_progression_one_line_per_method_and_dashed_fewshot():
    df = labelled(results_frame(fewshot=True))
    fig = progression_figure(df, ["recall@1", "nmi"])
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_lines()]
    assert len(axes) == 2
    for ax in axes:
        assert _data_lines(ax) == [("A", "-"), ("A (5-shot)", "--"), ("B", "-")]
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert lines["A"].get_color() == lines["A (5-shot)"].get_color()
        assert lines["A"].get_color() != lines["B"].get_color()
        assert lines["A"].get_marker() != lines["B"].get_marker()
        assert ax.get_legend() is None  # the legend lives outside the data area
        assert len(ax.collections) == 3  # one ±std band per series (two seeds)
    np.testing.assert_allclose(axes[0].get_lines()[0].get_ydata(), [0.7, 0.55, 0.3])
    np.testing.assert_allclose(axes[1].get_lines()[2].get_ydata(), [0.3, 0.3, 0.2])
    assert axes[0].get_ylabel().startswith("Recall@1") and axes[1].get_ylabel().startswith("NMI")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["A", "A (5-shot)", "B"]
    assert fig.get_supxlabel() == "Fréchet distance, train vs test (squared feature units)"


def test_fewshot_series_pairs_with_its_zeroshot_method_despite_its_own_settings():
    """Real few-shot rows carry the method config plus a "fewshot" entry: they must still be
    drawn and tabulated beside their zero-shot method, not as a separate method."""
    df = results_frame(fewshot=True)
    zs = '{"loss":"multisimilarity","train":{"epochs":10}}'
    fs = '{"fewshot":{"epochs":20,"tune":"head"},"loss":"multisimilarity","train":{"epochs":10}}'
    df["config"] = np.where(df["protocol"] == "fewshot", fs, zs)
    labelled_df = labelled(df)
    assert set(labelled_df["series"]) == {"A", "A (5-shot)", "B"}
    other = df[df["protocol"] == "fewshot"].assign(
        config=fs.replace('"epochs":20', '"epochs":50'))
    both = labelled(pd.concat([df, other], ignore_index=True))
    fewshot_series = sorted(set(both.loc[both["protocol"] == "fewshot", "series"]))
    assert len(fewshot_series) == 2 and all(s.startswith("A (5-shot) #") for s in fewshot_series)
    assert set(both.loc[both["protocol"] == "zeroshot", "series"]) == {"A", "B"}


def test_single_seed_draws_no_band():
    fig = progression_figure(labelled(results_frame(seeds=(1,))), ["recall@1"])
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 2 and len(ax.collections) == 0
    assert "no band" in fig.get_suptitle()


def test_pca_matches_covariance_eigenvectors():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 6)) * np.array([5.0, 2.0, 1.0, 0.5, 0.2, 0.1])
    coords, ratio = pca_2d(x)
    evals, evecs = np.linalg.eigh(np.cov(x, rowvar=False))
    top = evecs[:, ::-1][:, :2]
    ref = (x - x.mean(0)) @ top
    np.testing.assert_allclose(np.abs(coords), np.abs(ref), atol=1e-9)
    np.testing.assert_allclose(ratio, evals[::-1][:2] / evals.sum())
    line = np.outer(np.arange(5.0), [1.0, 2.0, 2.0])
    c, r = pca_2d(line)
    np.testing.assert_allclose(r, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(c[:, 0], (np.arange(5.0) - 2) * 3.0)


def _omniglot_pixel_means(zip_path: Path, classes: int = 8, per_class: int = 5):
    """Real class means: mean 21x21 thumbnails of the first images of the first classes."""
    with zipfile.ZipFile(zip_path) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".png"))
        by_class: dict[str, list[str]] = {}
        for n in names:
            by_class.setdefault(n.rsplit("/", 1)[0], []).append(n)
        keys = sorted(by_class)[:classes]
        means = []
        for k in keys:
            imgs = [np.asarray(Image.open(io.BytesIO(zf.read(n))).convert("L").resize((21, 21)),
                               dtype=np.float64).ravel() for n in by_class[k][:per_class]]
            means.append(np.mean(imgs, axis=0))
    return [f"c{i}" for i in range(classes)], np.stack(means)


def test_embedding_panels_show_each_side(omniglot_zip):
    classes, means = _omniglot_pixel_means(omniglot_zip)
    sf = splitfile()
    fig = embedding_figure(classes, means, sf.ladder)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 3
    for ax, split in zip(panels, sf.ladder, strict=True):
        counts = {c.get_label(): len(c.get_offsets()) for c in ax.collections}
        expect = {"train": len(split.train), "test": len(split.test)}
        if split.removed:
            expect["removed"] = len(split.removed)
        assert counts == expect
        assert ax.get_title().startswith(f"split {split.id}")
    with pytest.raises(Exception, match="no features"):
        embedding_figure(classes[:3], means[:3], sf.ladder)


# --- report folder and HTML ---------------------------------------------------------------

def test_report_folder_html_embeds_every_image(tmp_path):
    csv = tmp_path / "results.csv"
    frame = results_frame(fewshot=True).assign(splitfile_sha256=splitfile(start=2).sha256)
    frame.to_csv(csv, index=False)
    means = (["c" + str(i) for i in range(8)], np.random.default_rng(0).normal(size=(8, 5)))
    out = tmp_path / "rep"
    rep = build_report([csv], out, splitfile=splitfile(start=2), class_means=means)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["embedding.png", "ladder.png", "progression.png"]
    assert sorted(p.name for p in out.glob("*.pdf")) == [p.replace("png", "pdf") for p in pngs]
    page = (out / "index.html").read_text(encoding="utf-8")
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == len(pngs)
    import base64
    assert sorted(base64.b64decode(u) for u in uris) == sorted(
        (out / p).read_bytes() for p in pngs)
    for png in pngs:  # PNG stores dots per metre, so 150 dpi reads back as 150.01
        assert Image.open(out / png).info["dpi"] == pytest.approx((150, 150), abs=0.05)
    assert "src=\"http" not in page and "<script" not in page
    ranks = pd.read_csv(out / "ranks.csv")
    assert list(ranks["is_start"]) == [False, True, False]
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["series"]) == {"A", "A (5-shot)", "B"}
    a = summary[(summary["series"] == "A") & (summary["metric"] == "nmi")].iloc[0]
    assert a["easiest_value"] == pytest.approx(0.35)
    assert "| series |" in (out / "summary.md").read_text()
    assert rep.notes == []
    # byte-reproducible
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    build_report([csv], out, splitfile=splitfile(start=2), class_means=means)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_report_without_splitfile_notes_skipped_views(tmp_path):
    pq = tmp_path / "results.parquet"
    results_frame().to_parquet(pq)
    out = tmp_path / "rep"
    rep = build_report([tmp_path], out)
    assert [p.name for p in sorted(out.glob("*.png"))] == ["progression.png"]
    joined = " ".join(rep.notes)
    assert "ladder plot skipped" in joined and "embedding view skipped" in joined
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "embedding view skipped" in page and page.count("data:image/png;base64,") == 1


def test_cli_report(tmp_path, capsys):
    csv = tmp_path / "r.csv"
    results_frame(seeds=(0,)).to_csv(csv, index=False)
    out = tmp_path / "cli"
    main(["report", str(csv), "--out", str(out), "--metrics", "nmi"])
    err = capsys.readouterr().err
    assert "single seed" in err and (out / "index.html").is_file()
    assert set(pd.read_csv(out / "summary.csv")["metric"]) == {"nmi"}
    with pytest.raises(SystemExit) as exc:
        main(["report", str(csv), "--out", str(out), "--metrics", "map@r"])
    assert exc.value.code == 2
    assert "map@r" in capsys.readouterr().err


# --- bad input ----------------------------------------------------------------------------

def test_mixed_split_files_rejected(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    df = results_frame()
    df[df["method"] == "A"].to_csv(a, index=False)
    df[df["method"] == "B"].assign(splitfile_sha256="cd" * 32).to_csv(b, index=False)
    with pytest.raises(ResultsError, match="2 different split files"):
        load_results([a, b])
    with pytest.raises(ResultsError, match="--splits"):
        load_results([a], splitfile_sha256="ef" * 32)


def test_missing_metric_empty_and_duplicate_rejected(tmp_path):
    df = validate(results_frame())
    with pytest.raises(ResultsError, match="map@r.*available: recall@1, nmi"):
        select_metrics(df, ["recall@1", "map@r"])
    empty = tmp_path / "empty.csv"
    results_frame().iloc[:0].to_csv(empty, index=False)
    with pytest.raises(ResultsError, match="empty"):
        load_results([empty])
    one = tmp_path / "one.csv"
    results_frame().to_csv(one, index=False)
    with pytest.raises(ResultsError, match="duplicate"):
        load_results([one, one])
    bad = tmp_path / "bad.csv"
    results_frame().drop(columns=["seed"]).to_csv(bad, index=False)
    with pytest.raises(ResultsError, match="missing columns seed"):
        load_results([bad])
    with pytest.raises(ResultsError, match="not found"):
        load_results([tmp_path / "nope.parquet"])
    with pytest.raises(ResultsError, match="rank metric"):
        build_report(results_frame(), tmp_path / "x", rank_metric="map@r")


def test_ragged_seeds_rejected():
    df = results_frame()
    df = df[~((df["method"] == "A") & (df["seed"] == 1) & (df["split_id"] == 3))]
    with pytest.raises(ResultsError, match="seed 1 lacks split"):
        summary_table(labelled(df), ["recall@1"])


def test_config_variants_are_separate_series():
    df = results_frame()
    df2 = df[df["method"] == "A"].assign(config=json.dumps({"lr": 0.1}))
    lab = labelled(pd.concat([df, df2]))
    names = sorted(lab["series"].unique())
    assert len(names) == 3 and names[2] == "B" and all(n.startswith("A #") for n in names[:2])


def test_gaps_in_the_results_are_said_and_partial_series_get_no_auc(tmp_path):
    """A method without a metric, or without the hardest split, must not give a silently
    shorter curve or an AUC over part of the range that ranks it wrongly."""
    df = results_frame()
    df = df[~((df["method"] == "B") & (df["metric"] == "nmi"))]
    extra = [_row("C", split, seed, metric, v)
             for split, v in {1: 0.9, 2: 0.8}.items() for seed in (0, 1)
             for metric in ("recall@1", "nmi")]
    df = pd.concat([df, pd.DataFrame(extra)], ignore_index=True)
    out = tmp_path / "rep"
    rep = build_report(df, out)
    joined = "\n".join(rep.notes)
    assert "B: no nmi results" in joined
    assert "C: no results on split(s) [3] for recall@1, nmi" in joined
    assert "split 3: ranks 2 of 3 methods" in joined
    summary = pd.read_csv(out / "summary.csv").set_index(["series", "metric"])
    assert math.isnan(summary.loc[("C", "recall@1"), "auc"])
    assert "covers 2 of 3 splits" in summary.loc[("C", "recall@1"), "notes"]
    assert summary.loc[("A", "recall@1"), "auc"] > 0 and ("B", "nmi") not in summary.index
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "B: no nmi results" in page and "split 3: ranks 2 of 3" in page


def test_rebuild_removes_views_it_no_longer_writes_and_files_are_world_readable(tmp_path):
    import os
    import stat

    csv = tmp_path / "r.csv"
    results_frame().assign(splitfile_sha256=splitfile().sha256).to_csv(csv, index=False)
    out = tmp_path / "rep"
    build_report([csv], out, splitfile=splitfile(), class_means=(
        [f"c{i}" for i in range(8)], np.random.default_rng(0).standard_normal((8, 5))))
    assert (out / "ladder.png").is_file() and (out / "embedding.pdf").is_file()
    build_report([csv], out)
    assert not (out / "ladder.png").exists() and not (out / "embedding.pdf").exists()
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE((out / "index.html").stat().st_mode)
    assert mode == 0o666 & ~umask
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ResultsError, match="is a file"):
        build_report([csv], tmp_path / "afile")


def test_a_rescored_table_of_another_split_file_is_refused(tmp_path):
    """The agreement section must describe the ladder of --splits: a table with other split
    ids or distances is a one-line error before anything is written; the matching one works."""
    from oodml.splits.rescore import Rescore

    sf = splitfile()
    frame = results_frame().assign(splitfile_sha256=sf.sha256)
    common = dict(n_train=(4, 4, 3), n_test=(4, 3, 3), extractor="none", mode="class-means",
                  rescored_extractor="b", rescored_mode="samples", rescored=(1.0, 3.0, 2.0))
    mine = Rescore(split_ids=(1, 2, 3), distance=(10.0, 20.0, 40.0), **common)
    other = Rescore(split_ids=(1, 2, 3), distance=(10.0, 25.0, 40.0), **common)
    fewer = Rescore(split_ids=(1, 2), distance=(10.0, 20.0), **{
        **common, "n_train": (4, 4), "n_test": (4, 3), "rescored": (1.0, 3.0)})
    for bad in (other, fewer):
        with pytest.raises(ResultsError, match="other ids or distances") as err:
            build_report(frame, tmp_path / "r", splitfile=sf, rescored=bad)
        assert "\n" not in str(err.value)
    assert not (tmp_path / "r").exists()
    out = build_report(frame, tmp_path / "r", splitfile=sf, rescored=mine)
    assert "Agreement across extractors" in (out.out_dir / "index.html").read_text()
