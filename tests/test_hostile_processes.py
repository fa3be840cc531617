"""Hostile configs, outputs and processes (issue 11): code execution through import paths,
an unreachable Ray address, a task that kills its process, disk full on a checkpoint, malformed
run files and class lists."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from oodml.errors import ConfigError, OutputError
from oodml.fileio import read_text
from oodml.sweep.engine import LocalBackend, Task, run_tasks
from oodml.train.config import import_object
from oodml.train.losses import build_loss, loss_info, resolve_loss_args
from oodml.train.miners import build_miner, resolve_miner_args


@pytest.mark.parametrize(
    "path", ["os:system", "subprocess:Popen", "builtins:eval", "os:getcwd", "torch:zeros"]
)
def test_loss_import_path_must_name_an_nn_module_class(tmp_path, path):
    marker = tmp_path / "pwned"
    args = f"command='touch {marker}'" if path == "os:system" else None
    if path == "subprocess:Popen":
        args = f"args='touch {marker}',shell=True"
    with pytest.raises(ConfigError, match="not a class derived from torch.nn.Module") as err:
        build_loss(path, num_classes=3, embedding_size=4, args=args)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        resolve_loss_args(path, args)
    assert not marker.exists()


@pytest.mark.parametrize("path", ["os:system", "subprocess:Popen"])
def test_miner_import_path_must_name_an_nn_module_class(tmp_path, path):
    marker = tmp_path / "pwned"
    args = f"command='touch {marker}'" if path == "os:system" else f"args='touch {marker}'"
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        build_miner(path, args)
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        resolve_miner_args(path, args)
    assert not marker.exists()


@pytest.mark.parametrize("path", [":", "os:", ":system", "os..path:join", "a b:C", "x" * 300])
def test_malformed_import_paths_are_one_line_errors(path):
    with pytest.raises(ConfigError, match="not an import path") as err:
        loss_info(path) if ":" in path else import_object(path, "loss")
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_user_loss_and_pml_miner_classes_are_still_accepted():
    info = loss_info("torch.nn:TripletMarginLoss")
    assert info.factory is torch.nn.TripletMarginLoss
    miner = build_miner("pytorch_metric_learning.miners:BatchHardMiner")
    assert isinstance(miner, torch.nn.Module)


def test_unreachable_ray_address_fails_fast_with_one_line():
    from oodml.sweep.ray_backend import CONNECT_TIMEOUT_S, RayBackend

    start = time.monotonic()
    with pytest.raises(ConfigError, match="cannot connect to the Ray cluster") as err:
        RayBackend(address="127.0.0.1:1").run([Task("t", 1)], print, None, 0, print)
    assert time.monotonic() - start < CONNECT_TIMEOUT_S + 20
    assert "\n" not in str(err.value) and "127.0.0.1:1" in str(err.value)
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        RayBackend(address="nonsense").run([Task("t", 1)], print, None, 0, print)


def die_or_record(spec: tuple[str, str]) -> str:
    """Sweep task for the isolation test: ``die`` kills its own process, the others write a
    marker file (module level so the spawned worker can import it)."""
    name, folder = spec
    if name == "die":
        os._exit(3)
    if name == "raise":
        raise ValueError("bad value\nsecond line")
    Path(folder, name).write_text("done")
    return name


def test_a_task_that_kills_its_process_does_not_end_the_local_sweep(tmp_path):
    tasks = [Task(k, (k, str(tmp_path))) for k in ("first", "die", "raise", "last")]
    state = run_tasks(
        tasks, die_or_record, lambda s: False, LocalBackend(isolate=True), retries=1
    )
    assert state.done == 2 and state.left == 0
    assert (tmp_path / "first").is_file() and (tmp_path / "last").is_file()
    assert state.failed["die"].startswith("WorkerDied: the task's process exited abruptly")
    assert state.failed["raise"] == "ValueError: bad value"
    assert state.retried == {"die": 1, "raise": 1}


def test_disk_full_while_writing_a_checkpoint_is_a_one_line_error(tmp_path, monkeypatch):
    """torch.save's own zip writer meets ENOSPC (/dev/full); the previous checkpoint stays."""
    from oodml.train import loop

    path = tmp_path / "ckpt.pt"
    loop.save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, _p: real_save(obj, "/dev/full"))
    with pytest.raises(OutputError, match="cannot write checkpoint") as err:
        loop.save_checkpoint(path, {"epoch": 2, "w": torch.zeros(1000, 1000)})
    assert "\n" not in str(err.value) and "enforce fail" not in str(err.value)
    monkeypatch.setattr(torch, "save", real_save)
    assert loop.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


GOOD_ROW = {
    "splitfile_sha256": "ab", "dataset": "omniglot", "split_id": 1, "distance": 1.5,
    "method": "m", "config": "{}", "seed": 0, "protocol": "zeroshot", "shots": 0,
    "metric": "recall@1", "value": 0.5, "std": None, "n_episodes": 0, "wall_time_s": 1.0,
    "device": "cpu", "epochs": 1,
}


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"key": "k", "config": "{}", "rows": [1]}, "a result row is int"),
        ([], "is not a run record"),
        ({"key": "k", "config": "{}", "rows": {}}, "has no list of rows"),
        ({"key": "k", "rows": []}, "is not a run record"),
        ({"key": "k", "config": "{}", "rows": [{**GOOD_ROW, "split_id": "1"}]}, "split_id='1'"),
        ({"key": "k", "config": "{}", "rows": [{**GOOD_ROW, "value": "x"}]}, "value='x'"),
        ({"key": "k", "config": "{}", "rows": [{"metric": "nmi"}]}, "lacks columns"),
    ],
)
def test_malformed_run_file_is_a_one_line_error(tmp_path, doc, needle):
    from oodml.errors import ResultsError
    from oodml.results import read_run

    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultsError) as err:
        read_run(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_run_file_written_by_write_run_passes_the_check(tmp_path):
    from oodml.results import read_run, run_path, write_run

    write_run(tmp_path, "key1", "{}", [{**GOOD_ROW, "std": float("nan")}])
    assert read_run(run_path(tmp_path, "key1"))["rows"][0]["value"] == GOOD_ROW["value"]


def test_class_list_that_is_not_utf8_is_a_one_line_error(tmp_path):
    bad = tmp_path / "a.txt"
    bad.write_bytes(b"classA\n\xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8 text") as err:
        read_text(bad, "class list")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="is a folder, not a regular file"):
        read_text(tmp_path, "class list")
    good = tmp_path / "b.txt"
    good.write_text("caf\u00e9\n", encoding="utf-8")
    assert read_text(good) == "caf\u00e9\n"


def test_unreadable_checkpoints_are_one_line_errors_without_torch_s_advice(tmp_path):
    """A checkpoint of foreign objects, a text file and a truncated one: each a one-line
    ConfigError naming the file; none suggests weights_only=False."""
    import pickle

    from oodml.errors import ConfigError
    from oodml.train import loop

    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(pickle.dumps(ConfigError("x")))
    text = tmp_path / "text.pt"
    text.write_text("hello\n")
    good = tmp_path / "good.pt"
    loop.save_checkpoint(good, {"epoch": 1, "w": torch.ones(3)})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    why = {foreign: "not a torch file of tensors", text: "not a torch file of tensors",
           truncated: "empty or truncated", empty: "empty or truncated"}
    for path, reason in why.items():
        with pytest.raises(ConfigError, match="delete it to start over") as err:
            loop.load_checkpoint(path)
        msg = str(err.value)
        assert str(path) in msg and "\n" not in msg and "weights_only" not in msg, msg
        assert reason in msg, msg
