"""The ladder runner: end to end on a synthetic study and the real Omniglot subset, resume,
determinism, the results schema, and errors raised before any training."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from oodml.errors import ConfigError, SplitFileError
from oodml.metrics import DEFAULT_METRICS, evaluate_embeddings
from oodml.results import COLUMNS, merge_results
from oodml.splits.splitfile import load_splitfile
from oodml.train.loop import TrainConfig
from oodml.train.run import check_specs, run_ladder, run_one, trained_model
from oodml.train.spec import RunSpec, run_key
from oodml.train.synthetic import make_synthetic_study
from oodml_cli import app, main

from reference import study_args, study_spec

REPO = Path(__file__).resolve().parents[1]
VOLATILE = ["wall_time_s"]


def grid(study, out: Path, **kw) -> list[RunSpec]:
    return [study_spec(study, out, s, seed, **kw) for s in (1, 2) for seed in (0, 1)]


def test_rows_follow_the_schema_and_equal_the_metrics_of_the_trained_model(study, tmp_path):
    spec = study_spec(study, tmp_path)
    rows = run_one(spec)
    assert [r["metric"] for r in rows] == list(DEFAULT_METRICS)
    sf = load_splitfile(study.splitfile)
    for r in rows:
        assert set(r) == set(COLUMNS)
        assert r["splitfile_sha256"] == sf.sha256 and r["split_id"] == 1
        assert r["distance"] == sf.split(1).distance and r["protocol"] == "zeroshot"
        assert r["shots"] == 0 and math.isnan(r["std"]) and r["n_episodes"] == 0
        assert r["epochs"] == 2 and r["device"] == "cpu" and r["method"] == "multisimilarity"
        assert json.loads(r["config"])["loss"] == "multisimilarity"
    # Recompute by hand: reload the final checkpoint, embed the test classes, score them.
    model, resolved, _, manifest, split, _ = trained_model(spec)
    idx = manifest.indices_of(split.test)
    labels = np.array([manifest.labels[i] for i in idx])
    import torch

    with torch.no_grad():
        emb = model(torch.as_tensor(study.features[idx])).numpy()
    expected = evaluate_embeddings(emb, labels)
    for r in rows:
        assert r["value"] == pytest.approx(expected[r["metric"]], abs=1e-6)
    assert 0.2 < expected["recall@1"] < 1.0  # a non-trivial task


def test_resume_after_a_kill_gives_the_same_rows_without_duplicates(study, tmp_path):
    full = tmp_path / "full"
    run_ladder(grid(study, full))
    killed = tmp_path / "killed"
    specs = grid(study, killed)
    run_ladder(specs[:2])
    partial = pd.read_parquet(killed / "results.parquet")
    assert len(partial) == 2 * len(DEFAULT_METRICS)
    # a run killed mid-training leaves a checkpoint but no run file
    with pytest.raises(KeyboardInterrupt):
        _kill_during(specs[2])
    assert not (killed / "runs" / f"{run_key(specs[2])}.json").exists()
    run_ladder(specs)
    run_ladder(specs)  # a third invocation changes nothing
    a = pd.read_parquet(full / "results.parquet").drop(columns=VOLATILE)
    b = pd.read_parquet(killed / "results.parquet").drop(columns=VOLATILE)
    assert len(b) == 4 * len(DEFAULT_METRICS)
    assert not b.duplicated(["split_id", "seed", "metric"]).any()
    pd.testing.assert_frame_equal(a, b)
    csv = pd.read_csv(killed / "results.csv")
    assert len(csv) == len(b) and list(csv.columns) == list(COLUMNS)


def _kill_during(spec: RunSpec) -> None:
    from oodml.train import loop

    original = loop.TensorInputs.train_batches

    def dying(self, sampler, epoch, device):
        if epoch == 1:
            raise KeyboardInterrupt
        yield from original(self, sampler, epoch, device)

    loop.TensorInputs.train_batches = dying
    try:
        run_one(spec)
    finally:
        loop.TensorInputs.train_batches = original


def test_same_seed_same_metrics_other_seed_differs(study, tmp_path):
    a = run_one(study_spec(study, tmp_path / "a", loss="triplet", miner="triplet-semihard"))
    b = run_one(study_spec(study, tmp_path / "b", loss="triplet", miner="triplet-semihard"))
    c = run_one(study_spec(study, tmp_path / "c", seed=1, loss="triplet", miner="triplet-semihard"))
    assert [r["value"] for r in a] == [r["value"] for r in b]
    assert [r["value"] for r in a] != [r["value"] for r in c]
    assert a[0]["method"] == "triplet+triplet-semihard"
    ja = (
        tmp_path
        / "a"
        / "runs"
        / f"{run_key(study_spec(study, tmp_path, loss='triplet', miner='triplet-semihard'))}.json"
    )
    jb = Path(str(ja).replace(str(tmp_path / "a"), str(tmp_path / "b")))
    strip = lambda p: [{**r, "wall_time_s": 0} for r in json.loads(p.read_text())["rows"]]  # noqa: E731
    assert strip(ja) == strip(jb)


def test_same_method_name_with_another_config_is_refused(study, tmp_path):
    run_one(study_spec(study, tmp_path))
    other = study_spec(study, tmp_path, loss_args={"alpha": 3.0})
    with pytest.raises(ConfigError, match="different config.*name this method differently"):
        run_one(other)
    rows = run_one(replace(other, method="ms-alpha3"))
    assert rows[0]["method"] == "ms-alpha3"
    assert set(merge_results(tmp_path)["method"]) == {"multisimilarity", "ms-alpha3"}


def test_errors_come_before_any_training(study, tmp_path):
    out = tmp_path / "out"
    bad = [
        (dict(loss="nope"), "unknown loss 'nope'"),
        (dict(loss_args={"alpha": "x"}), "alpha=.x. has type str; expected float"),
        (dict(miner="nope"), "unknown miner 'nope'"),
        (dict(loss="softmax", miner="batch-hard"), "does not use a miner"),
        (dict(train=TrainConfig(batch_size=18, m=4)), "cannot hold m=4"),
        (dict(train=TrainConfig(batch_size=22, m=11)), "fewer than m=11 images"),
        (dict(device="cuda:7"), "CUDA is not available"),
        (dict(metrics=("recall@1", "recall@3")), "unknown metric 'recall@3'"),
        (dict(distance="manhattan"), "distance='manhattan' is not one of"),
    ]
    for kw, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            run_ladder([study_spec(study, out, 1, 0), study_spec(study, out, 2, 0, **kw)])
        assert not (out / "runs").exists()  # the valid first spec did not start either


def test_split_file_for_another_dataset_is_refused(study, tmp_path):
    other = make_synthetic_study(tmp_path / "other", n_classes=12, per_class=9)
    spec = replace(study_spec(study, tmp_path / "out"), root=str(other.root))
    with pytest.raises(SplitFileError, match="fingerprint"):
        check_specs([spec])
    with pytest.raises(SplitFileError, match="split id 9 is not in the ladder"):
        check_specs([study_spec(study, tmp_path / "out", split_id=9)])


def test_cli_evaluate_runs_and_reports_errors_in_one_line(study, tmp_path, capsys):
    out = tmp_path / "cli"
    args = study_args(study, "evaluate", out, "--loss", "proxyanchor", "--loss-args",
                      "margin=0.2", "--seeds", "0,1", "--splits", "2", "--epochs", "2",
                      "--batch-size", "16")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(out / "results.parquet")
    assert sorted(set(df["seed"])) == [0, 1] and set(df["split_id"]) == {2}
    assert json.loads(df["config"][0])["loss_args"]["margin"] == 0.2
    with pytest.raises(SystemExit) as exit_info:
        main(args[:-2] + ["--out", str(tmp_path / "x"), "--loss-args", "margn=1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no argument 'margn'" in err and "Traceback" not in err
    help_text = CliRunner().invoke(app, ["evaluate", "--help"]).output
    assert "--loss-args" in help_text and "--head-only" in help_text


OMNIGLOT_SPLITS = REPO / "splits" / "omniglot_small1_efficientnet-lite0_class-means_greedy.json"


def test_real_omniglot_ladder_head_only(omniglot_zip, omniglot_features, omniglot_features_cache):
    """1 split, 1 seed, 2 epochs of the published Omniglot ladder on real features."""
    assert OMNIGLOT_SPLITS.is_file(), f"published split file missing: {OMNIGLOT_SPLITS}"
    manifest, _ = omniglot_features
    sf = load_splitfile(OMNIGLOT_SPLITS)
    sf.check_against(manifest)
    hardest = sf.ladder[-1].id
    spec = RunSpec(
        splitfile=str(OMNIGLOT_SPLITS),
        root=str(omniglot_zip),
        split_id=hardest,
        seed=0,
        loss="multisimilarity",
        # one folder per split file: a persistent cache never mixes runs of two versions
        results_dir=str(omniglot_features_cache / f"results-{sf.sha256[:12]}"),
        cache_dir=str(omniglot_features_cache),
        train=TrainConfig(epochs=2, batch_size=32, m=4),
    )
    rows = run_one(spec)
    vals = {r["metric"]: r["value"] for r in rows}
    n_test = sum(manifest.class_counts[c] for c in sf.split(hardest).test)
    assert 1.0 / n_test < vals["recall@1"] <= 1.0  # far above chance
    assert vals["recall@1"] <= vals["recall@8"] and 0 < vals["map@r"] <= vals["recall@1"]
    assert rows[0]["distance"] == sf.split(hardest).distance


def test_bad_head_sizes_are_refused_when_the_spec_is_made(study, tmp_path):
    for kw, msg in [(dict(embed_dim=0), "embed_dim=0"), (dict(hidden=-5), "hidden=-5")]:
        with pytest.raises(ConfigError, match=msg):
            study_spec(study, tmp_path / "out", **kw)


def test_a_finished_run_is_not_reused_for_other_metrics(study, tmp_path):
    out = tmp_path / "out"
    run_one(study_spec(study, out, metrics=("recall@1",)))
    with pytest.raises(ConfigError, match="different config"):
        run_one(study_spec(study, out, metrics=("recall@1", "map@r")))


def test_a_diverging_loss_is_a_one_line_error(study, tmp_path):
    from oodml.errors import TrainingError

    with pytest.raises(ConfigError, match="lr=1e[+]38 must be <= 10"):
        TrainConfig(optimizer="sgd", lr=1e38)
    spec = study_spec(study, tmp_path / "out", loss="contrastive", loss_args={"neg_margin": 1e38},
                      train=TrainConfig(epochs=2, batch_size=16, m=4, optimizer="sgd", lr=10.0))
    with pytest.raises(TrainingError, match="loss became inf.* lower lr=10, or try optimizer "
                       "adam"):
        run_one(spec)


def test_size_controlled_rows_equal_the_metrics_on_drawn_test_classes(study, tmp_path):
    """Default N is the ladder's smallest test set (here every split's 6 classes, so one
    draw: the full-test values); an explicit N averages R seeded draws of N classes, the same
    draws for every seed and method (seeded by the split file)."""
    from oodml.metrics.sizecontrol import retrieval_metrics, size_controlled_metrics

    rows = run_one(study_spec(study, tmp_path / "a", gallery_classes=None))
    vals = {r["metric"]: r["value"] for r in rows}
    for m in retrieval_metrics(DEFAULT_METRICS):
        assert vals[f"{m}/n6"] == pytest.approx(vals[m], abs=1e-12)
    assert "nmi/n6" not in vals
    spec = study_spec(study, tmp_path / "b", gallery_classes=3, gallery_draws=4)
    rows = run_one(spec)
    vals = {r["metric"]: r["value"] for r in rows}
    model, resolved, sf, manifest, split, _ = trained_model(spec)
    idx = manifest.indices_of(split.test)
    labels = np.array([sorted(split.test).index(manifest.labels[i]) for i in idx])
    import torch

    with torch.no_grad():
        emb = model(torch.as_tensor(study.features[idx])).numpy()
    want = size_controlled_metrics(emb, labels, 3, draws=4, seed=sf.seed,
                                   metrics=retrieval_metrics(DEFAULT_METRICS))
    assert set(want) <= set(vals)
    for name, value in want.items():
        assert vals[name] == pytest.approx(value, abs=1e-6)
    # size-controlled rows carry their per-draw class values and an interval around the value
    from oodml.metrics.intervals import draw_class_values

    by_metric = {r["metric"]: r for r in rows}
    for name in want:
        row = by_metric[name]
        doc = json.loads(row["class_values"])
        assert len(doc["draws"]) == 4
        assert draw_class_values({0: doc}).estimate == pytest.approx(row["value"], abs=1e-8)
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert by_metric["nmi"]["class_values"] == "" and np.isnan(by_metric["nmi"]["ci_low"])
    assert json.loads(rows[0]["config"])["gallery"] == {"classes": 3, "draws": 4}
    with pytest.raises(ConfigError, match="gallery_classes=7 exceeds the 6 test classes"):
        check_specs([study_spec(study, tmp_path / "c", gallery_classes=7)])
