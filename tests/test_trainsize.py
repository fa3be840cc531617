"""The train-size-controlled protocol: N train classes drawn per split, seeded and recorded,
evaluated on the full test set; rows next to the full-train ones in the one schema."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oodml.errors import ConfigError
from oodml.results import COLUMNS, read_results, read_run, validate
from oodml.splits.oodml_pickle import PROCEDURE
from oodml.splits.splitfile import load_splitfile, save_splitfile
from oodml.train.loop import TrainConfig
from oodml.train.run import check_specs, run_ladder, run_one
from oodml.train.spec import RunSpec, run_key
from oodml.train.synthetic import make_synthetic_study
from oodml.train.trainsize import draw_seed, expand_train_draws
from oodml_cli import main

REPO = Path(__file__).resolve().parents[1]
OMNIGLOT_SPLITS = REPO / "splits" / "omniglot_small1_efficientnet-lite0_class-means_greedy.json"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_synthetic_study(tmp_path_factory.mktemp("synthetic"), n_classes=16, n_splits=2)


def spec_for(study, out: Path, split_id: int = 1, seed: int = 0, **kw) -> RunSpec:
    return RunSpec(
        splitfile=str(kw.pop("splitfile", study.splitfile)), root=str(study.root),
        split_id=split_id, seed=seed, loss="multisimilarity", results_dir=str(out),
        cache_dir=str(study.cache_dir), train=TrainConfig(epochs=2, batch_size=16, m=4),
        gallery_classes=kw.pop("gallery_classes", 0), **kw,
    )


def cli_error(argv: list[str], capsys) -> str:
    """Run the CLI expecting the one-line error (exit 2); return that line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and "Traceback" not in err, err
    return err


def by_hand_draw(train, n: int, seed: int) -> tuple[str, ...]:
    """The documented draw, written out: n of the sorted names by default_rng(seed)."""
    pool = sorted(train)
    return tuple(sorted(pool[i] for i in np.random.default_rng(seed).choice(len(pool), n,
                                                                            replace=False)))


def test_a_controlled_row_equals_a_full_run_on_a_hand_made_split_file(study, tmp_path):
    """Draw the classes with the recorded seed, write a split file whose split 1 trains on
    exactly them, train the ordinary way, compare every metric."""
    spec = spec_for(study, tmp_path / "a", train_classes=4, train_draws=2, gallery_classes=None)
    specs = expand_train_draws([spec])
    assert [s.train_draw for s in specs] == [None, 0, 1]
    rows = run_one(specs[2])
    sf = load_splitfile(study.splitfile)
    assert {r["train"] for r in rows} == {"n4"} and set(rows[0]) == set(COLUMNS)
    seed = rows[0]["train_seed"]
    assert seed == draw_seed(sf.seed, 1, 4, 1) and {r["train_seed"] for r in rows} == {seed}
    drawn = by_hand_draw(sf.split(1).train, 4, seed)
    hand = replace(sf, ladder=[replace(sf.split(1), train=drawn, val_train=(), val=())])
    path = save_splitfile(hand, tmp_path / "hand.json")
    ref = run_one(spec_for(study, tmp_path / "b", splitfile=path, gallery_classes=None))
    want = {r["metric"]: r["value"] for r in ref}
    got = {r["metric"]: r["value"] for r in rows}
    assert got.keys() == want.keys() and "recall@1/n8" in got
    for metric, value in want.items():
        assert got[metric] == pytest.approx(value, abs=1e-6), metric
    assert {r["train"] for r in ref} == {"all"} and {r["train_seed"] for r in ref} == {-1}


def test_keys_rows_and_resume_distinguish_controlled_runs(study, tmp_path):
    out = tmp_path / "out"
    six = expand_train_draws([spec_for(study, out, 1, train_classes=6, train_draws=2)])
    assert [run_key(s) for s in six] == [
        "multisimilarity/zeroshot/split001_seed0",
        "multisimilarity/zeroshot/split001_seed0_train6_draw0",
        "multisimilarity/zeroshot/split001_seed0_train6_draw1"]
    # 'min' is every split's whole train set here (8 classes): one draw, not two equal ones
    specs = expand_train_draws([spec_for(study, out, s, train_classes="min", train_draws=2)
                                for s in (1, 2)])
    keys = [run_key(s) for s in specs]
    assert keys[1] == "multisimilarity/zeroshot/split001_seed0_train8_draw0"
    assert len(set(keys)) == len(keys) == 4
    rows = run_ladder(specs)
    df = validate(pd.read_parquet(out / "results.parquet"))
    r1 = df[df["metric"] == "recall@1"]
    assert sorted(r1["train"].value_counts().items()) == [("all", 2), ("n8", 2)]
    assert r1.loc[r1["train"] == "n8", "train_seed"].nunique() == 2
    # the draw holds the whole train set, so it trains the same model as the full run
    full = r1[r1["train"] == "all"].set_index("split_id")["value"]
    for _, row in r1[r1["train"] == "n8"].iterrows():
        assert row["value"] == pytest.approx(full[row["split_id"]], abs=1e-6)
    again = run_ladder(specs)
    assert [r["value"] for r in again] == [r["value"] for r in rows]
    doc = read_run(out / "runs" / f"{keys[1]}.json")
    assert json.loads(doc["config"]) == json.loads(rows[0]["config"])  # one method config


def test_bad_train_classes_are_one_line_errors_before_training(study, tmp_path, capsys):
    base = ["evaluate", str(study.splitfile), "--root", str(study.root), "--loss",
            "multisimilarity", "--head-only", "--cache", str(study.cache_dir), "--epochs", "1"]
    for value, msg in [("9", "train_classes=9 exceeds the 8 train classes of split 1"),
                       ("0", "train_classes=0 must be >= 2"),
                       ("some", "train_classes='some' must be an integer >= 2 or 'min'")]:
        out = tmp_path / f"out{value}"
        err = cli_error([*base, "--out", str(out), "--train-classes", value], capsys)
        assert msg in err, err
        assert not (out / "runs").exists()
    sf = load_splitfile(study.splitfile)
    imported = replace(sf, procedure=PROCEDURE,
                       ladder=[replace(s, train=(), val_train=(), val=()) for s in sf.ladder])
    path = save_splitfile(imported, tmp_path / "imported.json")
    out = tmp_path / "imp"
    base[1] = str(path)
    err = cli_error([*base, "--out", str(out), "--train-classes", "min"], capsys)
    assert "split(s) [1, 2] of" in err and "have none" in err, err
    assert not (out / "runs").exists()
    with pytest.raises(ConfigError, match="train_draw needs an integer train_classes"):
        spec_for(study, tmp_path, train_classes="min", train_draw=0)
    with pytest.raises(ConfigError, match="train_draw=3 must be <= 2"):
        spec_for(study, tmp_path, train_classes=4, train_draw=3)
    with pytest.raises(ConfigError, match="exceeds the 8 train classes"):
        check_specs([spec_for(study, tmp_path, train_classes=12, train_draw=0)])


def test_sweep_toml_takes_the_protocol(study, tmp_path):
    from oodml.sweep.config import load_config
    from oodml.sweep.run import plan

    toml = tmp_path / "sweep.toml"
    toml.write_text(f'splitfile = "{study.splitfile}"\nroot = "{study.root}"\n'
                    f'results = "{tmp_path / "res"}"\ncache_dir = "{study.cache_dir}"\n'
                    'seeds = [0]\ntrain_classes = 5\ntrain_draws = 2\n'
                    '[train]\nbatch_size = 16\nm = 4\n'
                    '[[methods]]\nloss = "multisimilarity"\n')
    specs = plan(load_config(toml))
    assert [(s.split_id, s.train_draw) for s in specs] == [
        (1, None), (1, 0), (1, 1), (2, None), (2, 0), (2, 1)]
    toml.write_text(toml.read_text().replace("train_classes = 5", "train_draw = 1"))
    with pytest.raises(ConfigError, match="unknown key 'train_draw'"):
        load_config(toml)


def test_old_tables_read_as_full_train(tmp_path):
    """The committed CPU-study table predates train-size control: its rows, and the same rows
    as a CSV with or without the train columns, read as trained on every class."""
    old = REPO / "reports" / "cpu_study" / "results.parquet"
    table = pd.read_parquet(old)
    table.to_csv(tmp_path / "results.csv", index=False)
    for path in (old, tmp_path / "results.csv"):
        df = read_results(path)
        assert set(df["train"]) == {"all"} and set(df["train_seed"]) == {-1}
        assert len(validate(df)) == len(df)
    legacy = table.drop(columns=["train", "train_seed"], errors="ignore")
    legacy.to_csv(tmp_path / "legacy.csv", index=False)
    assert set(read_results(tmp_path / "legacy.csv")["train"]) == {"all"}
    with pytest.raises(Exception, match="unknown train value"):
        validate(table.assign(train="half"))


def test_omniglot_split1_controlled_rows_are_below_full_train(omniglot_zip, omniglot_features,
                                                             omniglot_features_cache, tmp_path):
    """On the published ladder, split 1 trained on 17 classes (its smallest train set) scores
    below split 1 trained on all 68; each draw's classes follow from its recorded seed."""
    sf = load_splitfile(OMNIGLOT_SPLITS)
    spec = RunSpec(
        splitfile=str(OMNIGLOT_SPLITS), root=str(omniglot_zip), split_id=1, seed=0,
        loss="multisimilarity", results_dir=str(tmp_path / "res"),
        cache_dir=str(omniglot_features_cache), gallery_classes=0, metrics=("recall@1", "map@r"),
        train=TrainConfig(epochs=4, batch_size=64, m=4), train_classes="min", train_draws=2,
        checkpoints=False,
    )
    specs = expand_train_draws([spec])
    assert [s.train_classes for s in specs[1:]] == [17, 17]
    rows = run_ladder(specs)
    full = {r["metric"]: r["value"] for r in rows if r["train"] == "all"}
    ctrl = [r for r in rows if r["train"] == "n17"]
    seeds = sorted({r["train_seed"] for r in ctrl})
    assert seeds == sorted(draw_seed(sf.seed, 1, 17, d) for d in (0, 1))
    draws = [by_hand_draw(sf.split(1).train, 17, s) for s in seeds]
    assert draws[0] != draws[1] and all(set(d) <= set(sf.split(1).train) for d in draws)
    for metric in ("recall@1", "map@r"):
        vals = [r["value"] for r in ctrl if r["metric"] == metric]
        assert len(vals) == 2 and max(vals) < full[metric], (metric, vals, full[metric])
