"""Few-shot adaptation: episode construction, mean/std over episodes, resume, errors, real data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from oodml.errors import ConfigError, SplitFileError
from oodml.metrics import DEFAULT_METRICS
from oodml.metrics.intervals import mean_over_episodes
from oodml.results import run_path
from oodml.splits.splitfile import load_splitfile
from oodml.train.fewshot import _adapt_episode, episode_indices, run_fewshot
from oodml.train.loop import TrainConfig
from oodml.train.run import resolve, run_one, trained_model
from oodml.train.spec import FewshotConfig, RunSpec, fewshot_key, run_key
from oodml_cli import app

from reference import study_args, study_spec

REPO = Path(__file__).resolve().parents[1]


def test_episode_support_and_query_partition_the_episode_classes(study):
    _, sf, manifest, split = resolve(study_spec(study, Path("unused"), loss="proxyanchor"))
    episode = split.episodes[5][0]
    support, query, classes = episode_indices(manifest, split, episode)
    assert classes == sorted(split.test)
    assert len(support) == 5 * len(classes)
    assert not set(support.tolist()) & set(query.tolist())
    all_test = set(manifest.indices_of(split.test).tolist())
    assert set(support.tolist()) | set(query.tolist()) == all_test
    assert {manifest.paths[i] for i in support} == {p for c in classes for p in episode[c]}


def test_rows_are_mean_and_std_over_episodes(study, tmp_path):
    spec = study_spec(study, tmp_path, loss="proxyanchor")
    cfg = FewshotConfig(shots=(2, 5), ft_epochs=3)
    rows = run_fewshot(spec, cfg)
    assert {(r["shots"], r["metric"]) for r in rows} == {
        (s, m) for s in (2, 5) for m in DEFAULT_METRICS
    }
    # by hand: adapt every 2-shot episode separately with the same seeds
    base, resolved, _, manifest, split, _ = trained_model(spec)
    per_episode = [
        _adapt_episode(
            resolved, cfg, base, manifest, split, ep, 2, resolved.seed * 1_000_003 + 2 * 1009 + e
        )
        for e, ep in enumerate(split.episodes[2])
    ]
    for r in rows:
        assert r["protocol"] == "fewshot" and r["n_episodes"] == 3 and r["epochs"] == 2
        if r["shots"] == 2:
            vals = [s[r["metric"]] for s in per_episode]
            assert r["value"] == pytest.approx(np.mean(vals), abs=1e-9)
            assert r["std"] == pytest.approx(np.std(vals), abs=1e-9)
    assert any(r["std"] > 0 for r in rows)  # episodes really differ
    # intervals: each class's mean over the episodes, query-weighted, is the row's value
    for r in rows:
        if r["metric"] == "nmi":
            assert r["class_values"] == "" and math.isnan(r["ci_low"])
            continue
        doc = json.loads(r["class_values"])
        if "draws" in doc:
            continue
        n, v = np.asarray(doc["n"], dtype=float), np.asarray(doc["v"])
        # the zero-shot rows' class keys (positions in the sorted test classes), so they pair
        assert doc["classes"] == [str(i) for i in range(len(split.test))]
        assert (n @ v) / n.sum() == pytest.approx(r["value"], abs=1e-8)
        assert r["ci_low"] <= r["value"] <= r["ci_high"] and r["ci_high"] > r["ci_low"]


def test_mean_over_episodes_averages_classes_and_refuses_mismatches():
    a = {"classes": ["x", "y"], "n": [3, 1], "recall@1": [1.0, 0.0],
         "recall@1/n1": {"classes": ["x", "y"], "n": [3, 1], "draws": [[0], [1]],
                         "v": [[1.0, 0.0], [0.0, 0.0]]}}
    b = {"classes": ["x", "y"], "n": [3, 1], "recall@1": [0.5, 1.0],
         "recall@1/n1": {"classes": ["x", "y"], "n": [3, 1], "draws": [[0], [1]],
                         "v": [[0.0, 0.0], [0.0, 1.0]]}}
    out = mean_over_episodes([a, b])
    assert out["recall@1"] == [0.75, 0.5]
    assert out["recall@1/n1"]["v"] == [[0.5, 0.0], [0.0, 0.5]]
    # episode means (3*1+0)/4 = 0.75 and (3*0.5+1)/4 = 0.625 average to 0.6875
    assert (3 * 0.75 + 0.5) / 4 == pytest.approx((0.75 + 0.625) / 2)
    other = {**b, "recall@1/n1": {**b["recall@1/n1"], "draws": [[1], [0]]}}
    assert "recall@1/n1" not in mean_over_episodes([a, other])
    assert mean_over_episodes([a, {**b, "n": [2, 2]}]) == {}
    assert mean_over_episodes([]) == {}


def test_fewshot_reuses_the_zeroshot_model_and_resumes(study, tmp_path):
    spec = study_spec(study, tmp_path)
    run_one(spec)
    ckpt = tmp_path / "checkpoints" / f"{run_key(spec)}.pt"
    stamp = ckpt.stat().st_mtime_ns
    cfg = FewshotConfig(shots=(2,), ft_epochs=2, max_episodes=2)
    first = run_fewshot(spec, cfg)
    assert ckpt.stat().st_mtime_ns == stamp  # the trained model was reloaded, not retrained
    assert run_path(tmp_path, fewshot_key(spec, 2)).is_file()
    again = run_fewshot(spec, cfg)
    assert [r["value"] for r in first] == [r["value"] for r in again]
    zero = {r["metric"]: json.loads(r["class_values"])["classes"] for r in run_one(spec)
            if r["class_values"]}
    for r in first:  # few-shot class values name the same classes as zero-shot ones: paired
        if r["class_values"]:
            assert json.loads(r["class_values"])["classes"] == zero[r["metric"]], r["metric"]
    assert first[0]["n_episodes"] == 2


def test_fewshot_errors(study, tmp_path):
    with pytest.raises(SplitFileError, match="no 10-shot episodes .*has: 2, 5"):
        run_fewshot(study_spec(study, tmp_path, loss="proxyanchor"), FewshotConfig(shots=(10,)))
    with pytest.raises(ConfigError, match="tune='backbone' is not one of: head, all"):
        FewshotConfig(tune="backbone")
    with pytest.raises(ConfigError, match="shots=0 must be >= 1"):
        FewshotConfig(shots=(0,))
    for kw, msg in [(dict(max_episodes=0), "max_episodes=0 must be >= 1"),
                    (dict(max_episodes=-1), "max_episodes=-1"),
                    (dict(ft_lr=0.0), "ft_lr=0.0 must be a number > 0"),
                    (dict(ft_lr=float("nan")), "ft_lr=nan must be a finite number"),
                    (dict(ft_epochs=0), "ft_epochs=0 must be >= 1")]:
        with pytest.raises(ConfigError, match=msg):
            FewshotConfig(**kw)
    with pytest.raises(ConfigError, match="tune='all' .* head-only"):
        run_fewshot(study_spec(study, tmp_path, loss="proxyanchor"), FewshotConfig(tune="all"))


def test_cli_fewshot_writes_fewshot_rows(study, tmp_path):
    out = tmp_path / "cli"
    args = study_args(study, "fewshot", out, "--loss", "softmax", "--epochs", "2",
                      "--batch-size", "16", "--shots", "5", "--ft-epochs", "2",
                      "--max-episodes", "2")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    assert set(df["protocol"]) == {"fewshot"} and set(df["shots"]) == {5}
    assert (df["n_episodes"] == 2).all() and not df["std"].isna().any()


OMNIGLOT_SPLITS = REPO / "splits" / "omniglot_small1_efficientnet-lite0_class-means_greedy.json"


def test_real_omniglot_fewshot(omniglot_zip, omniglot_features, omniglot_features_cache):
    assert OMNIGLOT_SPLITS.is_file(), f"published split file missing: {OMNIGLOT_SPLITS}"
    sf = load_splitfile(OMNIGLOT_SPLITS)
    split = sf.ladder[0]
    shots = min(split.episodes)
    spec = RunSpec(
        splitfile=str(OMNIGLOT_SPLITS),
        root=str(omniglot_zip),
        split_id=split.id,
        seed=0,
        loss="proxyanchor",
        results_dir=str(omniglot_features_cache / f"fewshot-{sf.sha256[:12]}"),
        cache_dir=str(omniglot_features_cache),
        train=TrainConfig(epochs=2, batch_size=32, m=4),
    )
    rows = run_fewshot(spec, FewshotConfig(shots=(shots,), ft_epochs=2, max_episodes=2))
    vals = {r["metric"]: r for r in rows}
    assert vals["recall@1"]["n_episodes"] == 2
    assert 0.05 < vals["recall@1"]["value"] <= 1.0 and not math.isnan(vals["map@r"]["std"])


def test_frozen_backbone_features_are_computed_once_and_equal(omniglot_zip, tmp_path):
    """Head-only adaptation of a full-backbone model looks every episode's features up in one
    table of the test images' backbone features; they equal a direct computation."""
    import torch

    from oodml.data import load_dataset
    from oodml.train.fewshot import FrozenFeatures, _frozen_features
    from oodml.train.models import build_model

    torch.manual_seed(0)
    manifest = load_dataset("omniglot", omniglot_zip)
    spec = RunSpec(splitfile="x.json", root=str(omniglot_zip), split_id=1, seed=0,
                   loss="multisimilarity", backbone="efficientnet-lite0", weights="random",
                   image_size=32, device="cpu", train=TrainConfig(image_cache=True),
                   results_dir=str(tmp_path))
    model = build_model("efficientnet-lite0", weights="random", dim=8)
    indices = np.arange(0, 400, 20)
    memo = FrozenFeatures(spec, model, manifest, indices)
    pick = indices[[3, 0, 7, 7, 12]]
    direct = _frozen_features(spec, model, manifest, pick)
    assert memo.features.shape == (20, 1280)
    np.testing.assert_allclose(memo.take(pick), direct, rtol=1e-5, atol=1e-6)
