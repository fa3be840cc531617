"""Issue 28, outputs: an output path is a regular file or absent (a device node, FIFO, symbolic
link or folder there is a one-line error whatever --force says, and is left as it was), plot
and rescore refuse an existing file without --force, `-o -` is standard output where a command
can write there, an empty --out is an error, a report replaces only what a report wrote, the
results table reads only the run files its layout writes, and a full disk is one line naming
the file (checkpoints included, never torch's "enforce fail")."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from oodml.errors import OutputError, ResultsError
from oodml.fileio import atomic_create, atomic_write, atomic_write_text
from oodml.report.build import MANIFEST, build_report
from oodml.results import merge_results, run_path, write_run
from oodml_cli import main

from reference import one_line_error

ROW = {"splitfile_sha256": "s", "dataset": "d", "split_id": 1, "distance": 1.0,
       "method": "m", "config": "A", "seed": 0, "protocol": "zeroshot", "shots": 0,
       "metric": "recall@1", "value": 0.5, "std": float("nan"), "n_episodes": 0,
       "wall_time_s": 1.0, "device": "cpu", "epochs": 1}


def make_node(folder: Path, kind: str) -> Path:
    """A non-regular file of ``kind`` in ``folder`` (never under /dev). A character device is a
    clone of /dev/null made with mknod (the container runs as root; without CAP_MKNOD the
    same device number cannot be made, and a FIFO stands in)."""
    path = folder / f"node-{kind}.png"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "chardev":
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            os.mkfifo(path)
    elif kind == "symlink":
        target = folder / f"target-{kind}.txt"
        target.write_text("keep me")
        path.symlink_to(target)
    elif kind == "dangling":
        path.symlink_to(folder / "nowhere" / "x.png")
    elif kind == "dir":
        path.mkdir()
    return path


def snapshot(path: Path) -> tuple:
    st = os.lstat(path)
    extra = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
    target = Path(path).resolve().read_text() if extra and Path(path).resolve().is_file() else None
    return (stat.S_IFMT(st.st_mode), st.st_ino, st.st_rdev, extra, target)


KINDS = ["fifo", "chardev", "symlink", "dangling", "dir"]


def command(name: str, study, out: Path, pickle: Path) -> list[str]:
    sf, root, cache = str(study.splitfile), str(study.root), str(study.cache_dir)
    return {
        "plot": ["splits", "plot", sf, "-o", str(out)],
        "rescore": ["splits", "rescore", sf, "--root", root, "--cache", cache, "-o", str(out)],
        "generate": ["splits", "generate", "imagefolder", "--root", root, "--cache", cache,
                     "-o", str(out), "--levels", "2", "--bootstrap", "0"],
        "import-oodml": ["splits", "import-oodml", str(pickle), "-o", str(out)],
        "export-oodml": ["splits", "export-oodml", sf, "-o", str(out)],
    }[name]


@pytest.fixture(scope="module")
def study_pickle(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("pkl") / "study.pkl"
    main(["splits", "export-oodml", str(study.splitfile), "-o", str(out)])
    return out


@pytest.mark.parametrize("cmd", ["plot", "rescore", "generate", "import-oodml", "export-oodml"])
@pytest.mark.parametrize("kind", KINDS)
def test_an_output_that_is_not_a_regular_file_is_refused_even_with_force(
        cli, tmp_path, study, study_pickle, cmd, kind):
    """The issue's `-o fakenull` (a device node) and `-o /dev/stdout` (a link): one line naming
    the path, the node untouched (same type, inode and device number; a link still a link to
    the same file with the same content)."""
    node = make_node(tmp_path, kind)
    before = snapshot(node)
    for force in ([], ["--force"]):
        code, _, err = cli(*command(cmd, study, node, study_pickle), *force)
        line = one_line_error(code, err)
        assert str(node) in line, line
        assert "not a regular file" in line or (kind == "dir" and "is a folder" in line), line
        assert snapshot(node) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("kind", KINDS)
def test_library_writers_never_replace_a_special_file(tmp_path, kind):
    node = make_node(tmp_path, kind)
    before = snapshot(node)
    with pytest.raises(OutputError, match="not a regular file"):
        atomic_write_text(node, "x")
    with pytest.raises(OutputError, match="not a regular file"):
        atomic_create(node, lambda p: p.write_text("x"))
    assert snapshot(node) == before


def test_a_node_that_appears_while_writing_is_not_replaced(tmp_path):
    """The rule is checked again just before the rename: a FIFO made at the path while the
    temporary file is written survives, and no temporary file is left."""
    path = tmp_path / "out.csv"

    def write(p: Path) -> None:
        p.write_text("data")
        os.mkfifo(path)

    with pytest.raises(OutputError, match="FIFO"):
        atomic_write(path, write)
    assert stat.S_ISFIFO(os.lstat(path).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


@pytest.mark.parametrize("cmd", ["plot", "rescore"])
def test_plot_and_rescore_refuse_an_existing_file_without_force(cli, tmp_path, study, cmd):
    out = tmp_path / "existing.out"
    out.write_text("precious")
    code, _, err = cli(*command(cmd, study, out, tmp_path))
    assert "already exists; pass --force" in one_line_error(code, err)
    assert out.read_text() == "precious"
    code, _, err = cli(*command(cmd, study, out, tmp_path), "--force")
    assert code == 0, err
    assert out.read_bytes() != b"precious"


def test_plot_checks_the_pdf_beside_it_too(cli, tmp_path, study):
    (tmp_path / "l.pdf").write_text("precious")
    code, _, err = cli("splits", "plot", str(study.splitfile), "-o",
                       str(tmp_path / "l.png"), "--pdf")
    assert "l.pdf already exists" in one_line_error(code, err)
    assert not (tmp_path / "l.png").exists() and (tmp_path / "l.pdf").read_text() == "precious"


def test_rescore_writes_its_csv_to_stdout_with_dash(cli, study):
    code, out, err = cli("splits", "rescore", str(study.splitfile), "--root",
                         str(study.root), "--cache", str(study.cache_dir), "-o", "-")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("split_id,") and len(lines) == 3  # header + 2 splits
    assert "Kendall" in err  # the table and summary went to stderr
    assert not Path("-").exists()


@pytest.mark.parametrize("cmd", ["plot", "generate", "import-oodml", "export-oodml"])
def test_dash_is_refused_where_a_command_cannot_write_to_stdout(
        cli, study, study_pickle, cmd):
    code, _, err = cli(*command(cmd, study, Path("-"), study_pickle))
    assert "standard output (-)" in one_line_error(code, err)
    assert not Path("-").exists()


@pytest.mark.parametrize("args", [
    ["evaluate", "S", "--root", "R", "--loss", "contrastive", "--out", ""],
    ["fewshot", "S", "--root", "R", "--loss", "contrastive", "--out", ""],
    ["report", "T", "--out", ""],
    ["splits", "plot", "S", "-o", ""],
    ["splits", "rescore", "S", "--root", "R", "-o", ""],
    ["splits", "generate", "omniglot", "--root", "R", "-o", ""],
    ["splits", "import-oodml", "P", "-o", ""],
    ["splits", "export-oodml", "S", "-o", ""],
])
def test_an_empty_out_is_an_error_never_the_current_folder(cli, args):
    code, _, err = cli(*args)
    assert "path is empty" in one_line_error(code, err)


def test_an_empty_cache_folder_is_an_error_too(cli, tmp_path, study):
    """The feature cache is an output folder: `--cache ""` is not the current folder."""
    code, _, err = cli("splits", "generate", "imagefolder", "--root", study.root, "--cache", "",
                       "-o", tmp_path / "s.json", "--levels", "2", "--bootstrap", "0")
    assert "feature cache path is empty" in one_line_error(code, err)
    code, _, err = cli("report", "T", "--out", tmp_path / "r", "--cache", "")
    assert "feature cache path is empty" in one_line_error(code, err)
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(f'splitfile = "{study.splitfile}"\nroot = "{study.root}"\nresults = "out"\n'
                   'cache_dir = ""\n[[methods]]\nloss = "contrastive"\n')
    code, _, err = cli("sweep", cfg)
    assert "'cache_dir' is an empty path" in one_line_error(code, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.toml"]


# ---- report folders (item 2) ----

def frame() -> pd.DataFrame:
    rows = []
    for method, base in (("A", 0.8), ("B", 0.6)):
        for split, dist in ((1, 10.0), (2, 20.0), (3, 40.0)):
            for seed in (0, 1):
                rows.append({**ROW, "method": method, "split_id": split, "distance": dist,
                             "seed": seed, "config": "{}", "splitfile_sha256": "ab" * 32,
                             "value": base - 0.1 * split + 0.01 * seed})
    return pd.DataFrame(rows)


def test_report_refuses_a_foreign_folder_and_with_force_deletes_nothing_it_did_not_write(
        cli, tmp_path):
    """The issue's case: DIR/ladder.png, ladder.pdf, embedding.* made by the user, a report
    built without --splits. Without --force: refused, untouched. With --force: written beside
    them, every foreign file byte-identical."""
    table = tmp_path / "results.csv"
    frame().to_csv(table, index=False)
    out = tmp_path / "DIR"
    out.mkdir()
    foreign = {n: f"user's {n}".encode() for n in
               ("ladder.png", "ladder.pdf", "embedding.png", "embedding.pdf", "notes.txt")}
    for name, data in foreign.items():
        (out / name).write_bytes(data)
    code, _, err = cli("report", str(table), "--out", str(out))
    line = one_line_error(code, err)
    assert "no oodml report wrote" in line and "--force" in line
    assert sorted(p.name for p in out.iterdir()) == sorted(foreign)
    code, _, err = cli("report", str(table), "--out", str(out), "--force")
    assert code == 0, err
    for name, data in foreign.items():
        assert (out / name).read_bytes() == data
    listed = json.loads((out / MANIFEST).read_text())["files"]
    assert "index.html" in listed and not set(listed) & set(foreign)
    # a rebuild (no --force needed now) still keeps every foreign file
    code, _, err = cli("report", str(table), "--out", str(out))
    assert code == 0, err
    for name, data in foreign.items():
        assert (out / name).read_bytes() == data


def test_report_manifest_lists_what_a_rebuild_may_replace(tmp_path):
    """A build with the ladder view, then one without: ladder.png (listed) goes, a foreign
    file stays; a manifest naming a path outside the folder is refused before any write."""
    from oodml.splits.splitfile import Split, SplitFile

    classes = [f"c{i}" for i in range(8)]
    ladder = [Split(id=s, distance=d, is_start=s == 1, train=tuple(classes[:4]),
                    test=tuple(classes[4:])) for s, d in ((1, 10.0), (2, 20.0), (3, 40.0))]
    sf = SplitFile(dataset_name="synthetic", dataset_fingerprint=None, class_counts=None,
                   extractor="none", weights_sha256=None, distance_mode="class-means",
                   procedure="hand", params={}, seed=0, ladder=ladder)
    df = frame().assign(splitfile_sha256=sf.sha256)
    out = tmp_path / "rep"
    build_report(df, out, splitfile=sf)
    assert (out / "ladder.png").is_file()
    (out / "mine.txt").write_text("mine")
    build_report(df, out)
    assert not (out / "ladder.png").exists() and (out / "mine.txt").read_text() == "mine"
    names = set(json.loads((out / MANIFEST).read_text())["files"])
    assert names == {p.name for p in out.iterdir()} - {MANIFEST, "mine.txt"}
    (out / MANIFEST).write_text(json.dumps({"schema": "oodml-report-manifest/1",
                                            "files": ["../victim.txt"]}))
    (tmp_path / "victim.txt").write_text("victim")
    with pytest.raises(OutputError, match="is not one oodml wrote"):
        build_report(df, out)
    assert (tmp_path / "victim.txt").read_text() == "victim"


def test_a_foreign_file_with_a_report_name_in_a_report_folder_needs_force(tmp_path):
    df = frame()
    out = tmp_path / "rep"
    build_report(df, out)
    listed = json.loads((out / MANIFEST).read_text())["files"]
    (out / MANIFEST).write_text(json.dumps({"schema": "oodml-report-manifest/1",
                                            "files": [n for n in listed if n != "summary.csv"]}))
    (out / "summary.csv").write_text("the user's own table")
    with pytest.raises(OutputError, match="'summary.csv', which no oodml report wrote"):
        build_report(df, out)
    assert (out / "summary.csv").read_text() == "the user's own table"
    build_report(df, out, force=True)
    assert (out / "summary.csv").read_text() != "the user's own table"


# ---- results table (item 5) ----

def test_the_results_table_reads_only_run_files_of_its_layout(tmp_path):
    """An older experiment under runs/ (any depth), stray JSON and a link are not merged."""
    write_run(tmp_path, "m/zeroshot/split001_seed0", "A", [ROW])
    old = tmp_path / "runs" / "old"
    write_run(old, "m/zeroshot/split002_seed0", "A", [{**ROW, "split_id": 2}])
    stray = [tmp_path / "runs" / "notes.json", tmp_path / "runs" / "m" / "x.json",
             tmp_path / "runs" / "m" / "zeroshot" / "deeper" / "split003_seed0.json",
             tmp_path / "runs" / "m" / "other" / "split004_seed0.json"]
    for p in stray:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(run_path(old, "m/zeroshot/split002_seed0").read_text())
    (tmp_path / "runs" / "m" / "zeroshot" / "split005_seed0.json").symlink_to(stray[0])
    assert list(merge_results(tmp_path)["split_id"]) == [1]


def test_a_run_file_copied_under_another_key_is_an_error(tmp_path):
    write_run(tmp_path, "m/zeroshot/split001_seed0", "A", [ROW])
    src = run_path(tmp_path, "m/zeroshot/split001_seed0")
    (src.parent / "split009_seed0.json").write_text(src.read_text())
    with pytest.raises(ResultsError, match="records run 'm/zeroshot/split001_seed0'"):
        merge_results(tmp_path)


def test_evaluate_into_a_folder_with_an_old_experiment_under_runs(cli, tmp_path, study):
    """The issue's `--out proj` with `proj/runs/old` holding an older results folder: the
    table holds this study's runs only."""
    proj = tmp_path / "proj"
    write_run(proj / "runs" / "old", "m/zeroshot/split001_seed0", "A", [ROW])
    code, _, err = cli("evaluate", str(study.splitfile), "--root", str(study.root),
                       "--cache", str(study.cache_dir), "--out", str(proj), "--loss",
                       "contrastive", "--epochs", "1", "--batch-size", "12", "--m", "2",
                       "--no-checkpoints", "--splits", "1")
    assert code == 0, err
    table = pd.read_csv(proj / "results.csv")
    assert set(table["method"]) == {"contrastive"} and set(table["split_id"]) == {1}


def test_evaluate_refuses_a_results_table_that_is_a_link_before_training(
        cli, tmp_path, study):
    out = tmp_path / "res"
    out.mkdir()
    (tmp_path / "elsewhere.csv").write_text("keep")
    (out / "results.csv").symlink_to(tmp_path / "elsewhere.csv")
    code, _, err = cli("evaluate", str(study.splitfile), "--root", str(study.root),
                       "--cache", str(study.cache_dir), "--out", str(out), "--loss",
                       "contrastive", "--epochs", "1", "--no-checkpoints")
    line = one_line_error(code, err)
    assert "results table" in line and "symbolic link" in line
    assert not (out / "runs").exists() and (tmp_path / "elsewhere.csv").read_text() == "keep"


# ---- full disk ----

def enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "table.csv"
    path.write_text("old")
    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(OutputError) as err:
        atomic_write_text(path, "new", what="table")
    msg = str(err.value)
    assert str(path) in msg and "the disk is full" in msg and "\n" not in msg
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_a_full_disk_under_a_command_is_one_line(cli, tmp_path, study, monkeypatch):
    monkeypatch.setattr(os, "fsync", enospc)
    out = tmp_path / "ladder.png"
    code, _, err = cli("splits", "plot", str(study.splitfile), "-o", str(out))
    line = one_line_error(code, err)
    assert str(out) in line and "the disk is full" in line
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_a_checkpoint_names_it_not_torch(tmp_path, monkeypatch):
    """torch.save fails inside its zip writer; the message names the checkpoint and the full
    disk, never "[enforce fail at inline_container.cc"; the previous checkpoint is kept."""
    import torch

    from oodml.train.loop import load_checkpoint, save_checkpoint

    path = tmp_path / "checkpoints" / "run.pt"
    save_checkpoint(path, {"w": torch.ones(3)})
    real_write = os.write

    def write(fd: int, data) -> int:
        where = os.readlink(f"/proc/self/fd/{fd}")
        if where.startswith(str(tmp_path)) and len(data) > 1000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OutputError) as err:
        save_checkpoint(path, {"w": torch.zeros(100_000)})
    msg = str(err.value)
    assert f"checkpoint {path}" in msg and "the disk is full" in msg
    assert "enforce fail" not in msg and "\n" not in msg
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["run.pt"]
