"""Sweeps: config validation, the task engine, and a real local Ray instance on this machine."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from oodml.errors import ConfigError
from oodml.sweep.config import load_config
from oodml.sweep.engine import LocalBackend, Task, run_tasks
from oodml.sweep.run import SweepRun, plan, run_sweep
from oodml.sweep.tasks import execute_run, is_finished

KEY_COLS = ["method", "split_id", "seed", "metric"]


def write_config(path: Path, splitfile: Path, root: Path, results: Path, cache: Path, **extra):
    lines = [
        f'splitfile = "{splitfile}"',
        f'root = "{root}"',
        f'results = "{results}"',
        f'cache_dir = "{cache}"',
        "seeds = [0]",
        "splits = [1, 3]",
        'metrics = ["recall@1", "map@r"]',
        "gallery_classes = 0",
        *(f"{k} = {v}" for k, v in extra.items()),
        "[train]",
        "epochs = 1",
        "batch_size = 32",
        "[[methods]]",
        'loss = "multisimilarity"',
        "[[methods]]",
        'name = "triplet-semihard"',
        'loss = "triplet"',
        'miner = "triplet-semihard"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def ladder_file(omniglot_features, tmp_path_factory) -> Path:
    from oodml.splits.generate import generate_splitfile
    from oodml.splits.splitfile import save_splitfile

    manifest, features = omniglot_features
    sf = generate_splitfile(manifest, features, levels=3, shots=(2,), episodes=1)
    path = tmp_path_factory.mktemp("sweep_ladder") / "ladder.json"
    save_splitfile(sf, path)
    return path


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# --- config -----------------------------------------------------------------------------


def test_config_resolves_relative_paths_and_validates(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        'splitfile = "l.json"\nroot = "data"\nresults = "out"\nseeds = [0, 1]\n'
        '[train]\nepochs = 2\n[[methods]]\nloss = "contrastive"\n'
    )
    c = load_config(cfg)
    assert c.splitfile == str(tmp_path / "l.json")
    assert c.results == str(tmp_path / "out")
    assert c.seeds == (0, 1) and c.train == {"epochs": 2}
    assert c.methods[0].loss == "contrastive"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('root = "r"\nresults = "o"\n[[methods]]\nloss = "x"\n', "'splitfile'"),
        ('splitfile = "s"\nroot = "r"\nresults = "o"\n', "[[methods]]"),
        ('splitfile = "s"\nroot = "r"\nresults = "o"\nbogus = 1\n[[methods]]\nloss = "x"\n',
         "bogus"),
        ('splitfile = "s"\nroot = "r"\nresults = "o"\n[train]\nepoch = 1\n'
         '[[methods]]\nloss = "x"\n',
         "epoch"),
        ('splitfile = "s"\nroot = "r"\nresults = "o"\nseeds = "0"\n[[methods]]\nloss = "x"\n',
         "seeds"),
        ('splitfile = "s"\nroot = "r"\nresults = "o"\n[[methods]]\nloss = "x"\n[[methods]]\n'
         'loss = "x"\n', "unique"),
        ('splitfile = = "s"\n', "not valid TOML"),
    ],
)
def test_config_errors(tmp_path, body, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(body)
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    assert needle in str(exc.value) and str(cfg) in str(exc.value)


def test_unknown_split_and_loss_fail_before_training(tmp_path, ladder_file, omniglot_zip,
                                                      omniglot_features_cache):
    cfg = write_config(tmp_path / "s.toml", ladder_file, omniglot_zip, tmp_path / "out",
                       omniglot_features_cache)
    text = cfg.read_text().replace("splits = [1, 3]", "splits = [1, 99]")
    cfg.write_text(text)
    with pytest.raises(ConfigError, match="99"):
        plan(load_config(cfg))
    cfg.write_text(text.replace("splits = [1, 99]", "splits = [1]").replace(
        'loss = "multisimilarity"', 'loss = "nosuchloss"'))
    with pytest.raises(ConfigError, match="nosuchloss"):
        plan(load_config(cfg))
    assert not (tmp_path / "out").exists()


# --- engine -----------------------------------------------------------------------------


def test_local_engine_retries_then_reports_and_skips_finished():
    calls: dict[str, int] = {}
    finished: set[str] = {"a"}

    def execute(spec):
        calls[spec] = calls.get(spec, 0) + 1
        if spec == "flaky" and calls[spec] == 1:
            raise RuntimeError("transient")
        if spec == "bad":
            raise ValueError("always")
        finished.add(spec)

    tasks = [Task(k, k) for k in ("a", "b", "flaky", "bad")]
    state = run_tasks(tasks, execute, finished.__contains__, LocalBackend(), retries=2)
    assert state.skipped == 1 and "a" not in calls
    assert state.done == 2
    assert calls == {"b": 1, "flaky": 2, "bad": 3}
    assert state.retried == {"flaky": 1, "bad": 2}
    assert state.failed == {"bad": "ValueError: always"}
    assert state.left == 0


def test_engine_rejects_duplicate_tasks():
    with pytest.raises(ValueError, match="duplicate"):
        run_tasks([Task("x", 1), Task("x", 2)], lambda s: None, lambda s: False, LocalBackend())


# --- real sweeps ------------------------------------------------------------------------


def _table(path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path / "results.parquet")
    return df.sort_values(KEY_COLS).reset_index(drop=True)


def test_local_and_ray_sweeps_agree_and_rerun_skips(
    tmp_path, ladder_file, omniglot_zip, omniglot_features_cache, ray_session
):
    local_cfg = load_config(write_config(tmp_path / "local.toml", ladder_file, omniglot_zip,
                                         tmp_path / "local", omniglot_features_cache))
    ray_cfg = load_config(write_config(tmp_path / "ray.toml", ladder_file, omniglot_zip,
                                       tmp_path / "ray", omniglot_features_cache))
    local = run_sweep(local_cfg, SweepRun(backend="local", retries=0))
    assert local.state.done == 4 and not local.state.failed
    ray_out = run_sweep(ray_cfg, SweepRun(backend="ray", retries=0))
    assert ray_out.state.done == 4 and not ray_out.state.failed

    a, b = _table(tmp_path / "local"), _table(tmp_path / "ray")
    assert len(a) == 2 * 2 * 2  # methods x splits x metrics (one seed)
    assert not a.duplicated(KEY_COLS).any()
    assert a[KEY_COLS].equals(b[KEY_COLS])
    assert (a["value"] - b["value"]).abs().max() < 1e-6

    again = run_sweep(local_cfg, SweepRun(backend="local", retries=0))
    assert again.state.skipped == 4 and again.state.done == 0
    assert _table(tmp_path / "local").equals(a)


def kill_worker_once(item):
    """Kill this worker process the first time it sees split 3 of the first method."""
    spec = item[0]
    marker = Path(spec.results_dir) / "killed-once"
    if spec.split_id == 3 and spec.method is None and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return execute_run(item)


def test_ray_retries_a_killed_worker_without_losing_or_duplicating_rows(
    tmp_path, ladder_file, omniglot_zip, omniglot_features_cache, ray_session
):
    from oodml.results import merge_results
    from oodml.sweep.ray_backend import RayBackend
    from oodml.train.spec import run_key

    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cfg = load_config(write_config(tmp_path / "k.toml", ladder_file, omniglot_zip,
                                   tmp_path / "k", omniglot_features_cache))
    specs = plan(cfg)
    tasks = [Task(run_key(s), (s, 1, None)) for s in specs]
    state = run_tasks(tasks, kill_worker_once, is_finished, RayBackend(), retries=1)
    killed = [t.key for t in tasks if t.spec[0].split_id == 3 and t.spec[0].method is None]
    assert (tmp_path / "k" / "killed-once").exists()
    assert state.retried == {killed[0]: 1}
    assert state.done == 4 and not state.failed
    df = merge_results(tmp_path / "k")
    assert len(df) == 8 and not df.duplicated(KEY_COLS).any()
    assert set(zip(df["method"], df["split_id"], strict=True)) == {
        (m, s) for m in ("multisimilarity", "triplet-semihard") for s in (1, 3)
    }


def test_rerun_after_a_config_or_ladder_change_is_refused_not_skipped(
    tmp_path, ladder_file, omniglot_zip, omniglot_features_cache
):
    """A finished run is skipped only when its config and split file are the same: otherwise
    the old rows would be merged silently with (or instead of) the new ones."""
    from oodml.splits.splitfile import load_splitfile, save_splitfile

    path = write_config(tmp_path / "s.toml", ladder_file, omniglot_zip, tmp_path / "out",
                        omniglot_features_cache)
    text = path.read_text().replace("splits = [1, 3]", "splits = [1]")
    path.write_text(text)
    first = run_sweep(load_config(path), SweepRun(retries=0))
    assert first.state.done == 2
    assert run_sweep(load_config(path), SweepRun(retries=0)).state.skipped == 2

    path.write_text(text.replace("epochs = 1", "epochs = 2"))
    with pytest.raises(ConfigError, match="different config"):
        run_sweep(load_config(path), SweepRun(retries=0))

    sf = load_splitfile(ladder_file)
    other = tmp_path / "other.json"  # another ladder: same classes, another content sha256
    save_splitfile(dataclasses.replace(sf, seed=sf.seed + 1), other)
    assert load_splitfile(other).sha256 != load_splitfile(ladder_file).sha256
    path.write_text(text.replace(str(ladder_file), str(other)))
    with pytest.raises(ConfigError, match="measured on split file"):
        plan(load_config(path))
    assert len(pd.read_parquet(tmp_path / "out" / "results.parquet")) == 2 * 2


def test_gpu_runs_on_ray_are_checked_by_the_cluster_not_this_machine(
    tmp_path, ladder_file, omniglot_zip, omniglot_features_cache
):
    import torch

    cfg = load_config(write_config(tmp_path / "s.toml", ladder_file, omniglot_zip,
                                   tmp_path / "out", omniglot_features_cache))
    specs = plan(cfg, SweepRun(gpus_per_run=1, backend="ray"))
    assert {s.device for s in specs} == {"cuda"}
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            plan(cfg, SweepRun(gpus_per_run=1, backend="local"))


def test_eta_counts_parallel_workers_once(monkeypatch):
    from oodml.sweep import engine

    state = engine.SweepState(total=10, done=4, running=4, started_at=100.0)
    monkeypatch.setattr(engine.time, "monotonic", lambda: 160.0)
    assert state.eta_seconds() == pytest.approx(60.0 / 4 * 6)
    assert "ETA 1m30s" in state.line() and "left 6" in state.line()
    assert engine.SweepState(total=3).eta_seconds() is None
    assert engine.SweepState(total=3, skipped=3).eta_seconds() == 0.0


def test_ray_errors_are_one_line(monkeypatch):
    from oodml.sweep import ray_backend

    assert ray_backend._error_line(ValueError("always bad\nsecond line")) == (
        "ValueError: always bad"
    )
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'oodml\[dist\]'"):
        ray_backend.import_ray()
