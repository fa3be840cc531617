"""Hostile input at the command line: every command, malformed values, one line on stderr (no
traceback unless --debug), and no finished result ever lost or written outside its folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oodml.errors import ConfigError
from oodml.results import finished_rows, merge_results, run_path, write_run
from oodml_cli import main

from reference import one_line_error, study_args

REPO = Path(__file__).resolve().parents[1]


def train_args(study, out: Path, *extra: str) -> list[str]:
    return study_args(study, "evaluate", out, "--loss", "contrastive", "--epochs", "1",
                      "--batch-size", "12", "--m", "2", "--no-checkpoints", *extra)


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        (["--seeds", "-1"], "seed=-1 must be >= 0"),
        (["--seeds", str(2**64)], "must be <= 9223372036854775807"),
        (["--seeds", "x"], "seeds='x' must be comma-separated integers"),
        (["--lr", "nan"], "lr=nan must be a finite number"),
        (["--weight-decay", "nan"], "weight_decay=nan must be a finite number"),
        (["--method", ".."], "method='..' must be"),
        (["--method", "x" * 100_000], "method='xxxxxxxx"),
        (["--method", "a/b"], "method='a/b' must be"),
        (["--loss-args", "pos_margin=))"], "unbalanced brackets"),
        (["--embed-dim", "0"], "embed_dim=0 must be >= 1"),
        (["--distance", "manhattan"], "distance='manhattan' is not one of"),
        (["--splits", "7"], "split id 7 is not in the ladder"),
        (["--seeds", "0,0"], "_seed0 is listed twice"),
        (["--splits", "1,1"], "split001_seed0 is listed twice"),
        (["--head-only", "--backbone-weights", "random"], "weights='random' (--backbone-weights)"),
        (["--head-only", "--backbone-weights", "missing.pth"],
         "weights='missing.pth' (--backbone-weights) is for training a backbone"),
        (["--head-only", "--fold-bn"], "fold_bn=true (--fold-bn) folds a backbone's frozen"),
    ],
)
def test_evaluate_rejects_bad_values_in_one_line(cli, study, tmp_path, extra, names):
    code, _, err = cli(*train_args(study, tmp_path / "res", *extra))
    assert names in one_line_error(code, err)
    assert not (tmp_path / "res" / "runs").exists()


def test_output_paths_that_cannot_exist_fail_in_one_line(cli, study, tmp_path):
    code, _, err = cli(*train_args(study, tmp_path / ("o" * 5000)))
    assert "cannot" in one_line_error(code, err)
    code, _, err = cli("splits", "plot", str(study.splitfile), "-o",
                       str(tmp_path / ("p" * 300) / "x.png"))
    one_line_error(code, err)
    (tmp_path / "afile").write_text("x")
    code, _, err = cli("splits", "plot", str(study.splitfile), "-o",
                       str(tmp_path / "afile" / "sub" / "x.png"))
    assert f"{tmp_path / 'afile'} is a file, not a folder" in one_line_error(code, err)


def test_fewshot_and_generate_reject_bad_values_before_work(cli, study, tmp_path,
                                                            omniglot_zip):
    code, _, err = cli("fewshot", *train_args(study, tmp_path / "r")[1:], "--shots", "0")
    assert "shots=0 must be >= 1" in one_line_error(code, err)
    code, _, err = cli("fewshot", *train_args(study, tmp_path / "r")[1:], "--shots", "2,2")
    assert "shots=[2, 2] lists a shot count twice" in one_line_error(code, err)
    cache = tmp_path / "cache"
    base = ["splits", "generate", "omniglot", "--root", str(omniglot_zip), "--cache", str(cache),
            "-o", str(tmp_path / "l.json")]
    for extra, msg in [
        (["--param", "eps=nan"], "eps='nan' must be a number"),
        (["--param", "eps=abc"], "eps='abc' must be a number"),
        (["--param", "history=-1"], "history"),
        (["--param", "nonsense=1"], "nonsense"),
        (["--seed", "-1"], "seed=-1 must be an integer in"),
        (["--levels", "0"], "levels=0 must be an integer >= 1"),
        (["--targets", "1,x"], "targets='1,x'"),
        (["--levels", "3", "--targets", "20,40"], "levels=3 and targets=[20.0, 40.0] both given"),
        (["--mode", "pixels"], "unknown distance mode 'pixels'"),
        (["--val-fraction", "nan"], "val_fraction=nan"),
    ]:
        code, _, err = cli(*base, *extra)
        assert msg in one_line_error(code, err), extra
    assert not cache.exists()  # every option was checked before feature extraction


def test_sweep_configs_of_the_wrong_type_are_one_line(cli, study, tmp_path):
    head = (f'splitfile = "{study.splitfile}"\nroot = "{study.root}"\n'
            f'results = "{tmp_path / "sw"}"\n')
    method = '[[methods]]\nloss = "contrastive"\n'
    cases = {
        "train = 5\n" + method: "[train] must be a table",
        "seeds = [true]\n" + method: "seeds[0]=True must be an integer",
        "embed_dim = \"x\"\n" + method: "embed_dim='x' must be an integer",
        "[train]\nepochs = \"three\"\n" + method: "epochs='three' must be an integer",
        "[train]\nlr = nan\n" + method: "lr=nan must be a finite number",
        method + "name = \"..\"\n": "method='..' must be",
        method + "name = \"a\"\n" + method + "name = \"a\"\n": "two methods are both named 'a'",
        "bogus = 1\n" + method: "unknown key 'bogus'",
    }
    for i, (body, msg) in enumerate(cases.items()):
        cfg = tmp_path / f"s{i}.toml"
        cfg.write_text(head + body)
        code, _, err = cli("sweep", str(cfg))
        assert msg in one_line_error(code, err), body
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(head.encode() + b'# caf\xe9\n' + method.encode())
    code, _, err = cli("sweep", str(bad))
    assert "not UTF-8" in one_line_error(code, err)
    code, _, err = cli("sweep", str(tmp_path))
    assert "is a folder" in one_line_error(code, err)
    # an error found once the sweep started: off a terminal no status line is glued to it
    cfg = tmp_path / "badloss.toml"
    cfg.write_text(head + '[[methods]]\nloss = "foo"\n')
    code, _, err = cli("sweep", str(cfg))
    assert "unknown loss 'foo'" in one_line_error(code, err)
    cfg.write_text(head + method)
    code, _, err = cli("sweep", str(cfg), "--address", "127.0.0.1:1")
    assert "address='127.0.0.1:1' is a Ray cluster's" in one_line_error(code, err)


def test_reports_on_damaged_tables_are_one_line(cli, tmp_path):
    empty = tmp_path / "results.parquet"
    empty.write_bytes(b"")
    code, _, err = cli("report", str(empty), "--out", str(tmp_path / "rep"))
    assert "not a readable parquet table" in one_line_error(code, err)
    empty.write_bytes(b"PAR1" + os.urandom(64))
    code, _, err = cli("report", str(empty), "--out", str(tmp_path / "rep"))
    assert "not a readable parquet table" in one_line_error(code, err)


def test_every_command_gives_one_line_for_a_missing_input(cli, tmp_path):
    missing = str(tmp_path / "nope")
    for args in (
        ["features", "omniglot", "--root", missing],
        ["fid", missing, missing],
        ["splits", "show", missing],
        ["splits", "verify", missing, "--root", missing],
        ["splits", "export-oodml", missing, "-o", str(tmp_path / "x.pkl")],
        ["splits", "import-oodml", missing, "-o", str(tmp_path / "x.json")],
        ["evaluate", missing, "--root", missing, "--loss", "contrastive", "--out", missing],
        ["fewshot", missing, "--root", missing, "--loss", "contrastive", "--out", missing],
        ["report", missing, "--out", str(tmp_path / "r")],
        ["sweep", missing],
    ):
        code, _, err = cli(*args)
        one_line_error(code, err)


def test_unexpected_errors_are_one_line_unless_debug(cli, monkeypatch, tmp_path):
    import oodml.splits.splitfile as sfmod

    def boom(*_a, **_k):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(sfmod, "load_splitfile", boom)
    code, _, err = cli("splits", "show", str(tmp_path / "x.json"))
    line = one_line_error(code, err)
    assert "unexpected RuntimeError: something broke" in line and "--debug" in line
    assert code == 1
    with pytest.raises(RuntimeError):
        main(["--debug", "splits", "show", str(tmp_path / "x.json")])


def test_error_text_with_brackets_is_printed_verbatim(cli, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('splitfile = "a"\nroot = "b"\nresults = "c"\n[train]\nepochs = 1\n')
    code, _, err = cli("sweep", str(cfg))
    assert "[[methods]]" in one_line_error(code, err)


def test_old_flag_spellings_still_work_with_a_note(cli, study, tmp_path):
    code, _, err = cli("splits", "plot", str(study.splitfile), "--output",
                       str(tmp_path / "l.png"))
    assert code == 0 and "--output is now --out" in err and (tmp_path / "l.png").is_file()


def test_a_concurrent_run_with_another_config_never_loses_a_finished_run(tmp_path):
    """Two writers under one key: the first file stays, the second keeps its rows beside it
    and fails clearly (before the fix the second silently replaced the first)."""
    row = {"splitfile_sha256": "s", "dataset": "d", "split_id": 1, "distance": 1.0,
           "method": "m", "config": "A", "seed": 0, "protocol": "zeroshot", "shots": 0,
           "metric": "recall@1", "value": 0.5, "std": float("nan"), "n_episodes": 0,
           "wall_time_s": 1.0, "device": "cpu", "epochs": 1}
    key = "m/zeroshot/split001_seed0"
    write_run(tmp_path, key, "A", [row])
    with pytest.raises(ConfigError, match="different config finished .* first"):
        write_run(tmp_path, key, "B", [{**row, "config": "B", "value": 0.7}])
    assert finished_rows(tmp_path, key, "A")[0]["value"] == 0.5
    kept = list(run_path(tmp_path, key).parent.glob("*.conflict-*"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["rows"][0]["value"] == 0.7
    assert list(merge_results(tmp_path)["value"]) == [0.5]
    write_run(tmp_path, key, "A", [row])  # the same config finishing twice is fine


def test_two_concurrent_evaluate_processes_keep_both_or_fail_clearly(study, tmp_path):
    out = tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-m", "oodml", *train_args(study, out, "--lr", lr,
                                                                      "--splits", "1")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for lr in ("0.001", "0.002")
    ]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    table = merge_results(out)
    ok = [r for r in results if r[2] == 0]
    failed = [r for r in results if r[2] != 0]
    assert len(ok) >= 1
    raced = [err for _, err, _ in failed if "different config finished" in err]
    for _, err, _ in failed:
        # either both trained and the second to finish kept its rows beside the first, or the
        # first had finished before the second started and the second stopped before training
        assert "different config" in err and "Traceback" not in err
        assert ("kept in" in err) == (err in raced)
    assert set(table["split_id"]) == {1} and table["config"].nunique() == 1
    kept = list((out / "runs").rglob("*.conflict-*"))
    assert len(kept) == len(raced)


def test_a_run_file_with_bad_rows_is_one_line(tmp_path):
    from oodml.errors import ResultsError

    path = run_path(tmp_path, "m/zeroshot/split001_seed0")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"key": "k", "config": "A", "rows": [1]}))
    with pytest.raises(ResultsError, match="a result row is int"):
        merge_results(tmp_path)


def test_fid_eps_is_checked_with_its_reason_before_any_extraction(cli, tmp_path):
    """nan used to be refused by the option parser as 'not >= 0'; both reasons now come from
    the distance mode's check, which runs before the folders are read."""
    for value, shown in (("nan", "nan"), ("-1", "-1.0"), ("inf", "inf")):
        code, _, err = cli("fid", str(tmp_path / "a"), str(tmp_path / "b"), "--eps", value)
        assert f"eps={shown} must be a finite number >= 0" in one_line_error(code, err)
