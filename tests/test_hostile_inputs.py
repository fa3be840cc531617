"""Issue 28 item 10: every file input is a regular file read with a size bound. A FIFO never
blocks (each case runs under a deadline, so a regression fails instead of hanging), a device
such as /dev/zero (cloned here with mknod, never read from /dev) is never read, and a
``--weights`` device says it is not a regular file, not "not found"."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from oodml import fileio
from oodml.errors import OodmlError

DEADLINE_S = 20


@contextlib.contextmanager
def deadline(seconds: int = DEADLINE_S) -> Iterator[None]:
    """Fail (TimeoutError) instead of hanging when the block blocks, e.g. opening a FIFO."""

    def expire(*_):
        raise TimeoutError(f"blocked for more than {seconds} s (a FIFO read?)")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def zero_device(folder: Path, name: str) -> Path:
    """A clone of /dev/zero (char 1,5) in ``folder``; a FIFO where mknod is not allowed."""
    path = folder / name
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    except PermissionError:
        os.mkfifo(path)
    return path


def node(folder: Path, kind: str, name: str) -> Path:
    if kind == "fifo":
        path = folder / name
        os.mkfifo(path)
        return path
    if kind == "zero":
        return zero_device(folder, name)
    if kind == "link-to-zero":
        path = folder / name
        path.symlink_to(zero_device(folder, "z-" + name))
        return path
    if kind == "dir":
        path = folder / name
        path.mkdir()
        return path
    raise AssertionError(kind)


def _splitfile(p):
    from oodml.splits.splitfile import load_splitfile
    return load_splitfile(p)


def _verify(p):
    from oodml.splits.splitfile import load_for_verify
    return load_for_verify(p)


def _pickle(p):
    from oodml.splits.oodml_pickle import import_oodml
    return import_oodml(p)


def _sweep(p):
    from oodml.sweep.config import load_config
    return load_config(p)


def _rescored(p):
    from oodml.splits.rescore import read_rescore_csv
    return read_rescore_csv(p)


def _state_dict(p):
    from oodml.features.extractors import load_state_dict
    return load_state_dict(p)


def _checkpoint(p):
    from oodml.train.loop import load_checkpoint
    return load_checkpoint(p)


def _weights(p):
    from oodml.features.extractors import EXTRACTORS
    return EXTRACTORS.get("efficientnet-lite0").locate_weights(p)


def _backbone_weights(p):
    from torch import nn

    from oodml.train.models import load_state
    return load_state(nn.Linear(2, 2), str(p), "resnet50")


def _results(p):
    from oodml.results import read_results
    return read_results(p)


def _run_file(p):
    from oodml.results import read_run
    return read_run(p)


def _class_list(p):
    return fileio.read_text(p, "class list")


def _sop_info(p):
    from oodml.data.sop import parse_info_file
    return parse_info_file(p)


READERS: dict[str, tuple[Callable, str]] = {
    "split file": (_splitfile, "split.json"),
    "split file (verify)": (_verify, "split.json"),
    "ooDML pickle": (_pickle, "study.pkl"),
    "sweep config": (_sweep, "sweep.toml"),
    "rescored table": (_rescored, "rescored.csv"),
    "weights file": (_state_dict, "w.pth"),
    "checkpoint": (_checkpoint, "run.pt"),
    "--weights": (_weights, "w.pth"),
    "--backbone-weights": (_backbone_weights, "r50.pth"),
    "results table": (_results, "results.csv"),
    "run file": (_run_file, "split001_seed0.json"),
    "class list": (_class_list, "a.txt"),
    "SOP info file": (_sop_info, "Ebay_train.txt"),
}


@pytest.mark.parametrize("kind", ["fifo", "zero", "link-to-zero", "dir"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_file_input_must_be_a_regular_file(tmp_path, reader, kind):
    fn, name = READERS[reader]
    path = node(tmp_path, kind, name)
    with deadline(), pytest.raises(OodmlError) as err:
        fn(path)
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg, msg
    assert "not a regular file" in msg or (kind == "dir" and "folder" in msg), msg
    assert "not found" not in msg


@pytest.mark.parametrize("reader", sorted(set(READERS) - {"--weights"}))
def test_every_file_input_is_read_with_a_bound(tmp_path, reader, monkeypatch):
    """A regular file over the reader's bound is refused before it is read (fstat size), and
    every reader goes through the one bounded reader (open_input) to get there."""
    fn, name = READERS[reader]
    path = tmp_path / name
    path.write_bytes(b"x" * 4096)
    calls = []
    real = fileio.open_input

    def small(p, what="file", max_bytes=fileio.MAX_INPUT_BYTES, **kw):
        calls.append(max_bytes)
        return real(p, what, 1024, **kw)

    monkeypatch.setattr(fileio, "open_input", small)
    for mod in ("oodml.splits.splitfile", "oodml.splits.oodml_pickle", "oodml.results",
                "oodml.features.extractors", "oodml.fileio"):
        module = __import__(mod, fromlist=["x"])
        if hasattr(module, "open_input"):
            monkeypatch.setattr(module, "open_input", small)
    with deadline(), pytest.raises(OodmlError) as err:
        fn(path)
    assert "more than the 1024 bytes" in str(err.value), str(err.value)
    assert calls and all(b < 2**40 for b in calls)


def test_a_file_that_grows_after_fstat_is_read_only_to_the_bound(tmp_path, monkeypatch):
    """read_bytes reads at most max_bytes + 1 even when fstat saw a small file."""
    path = tmp_path / "grow.txt"
    path.write_bytes(b"a" * 10)
    real = os.fstat

    class Small:
        def __init__(self, st):
            self.st_mode, self.st_size = st.st_mode, 1

    monkeypatch.setattr(os, "fstat", lambda fd: Small(real(fd)))
    with pytest.raises(OodmlError, match="more than the 5 bytes"):
        fileio.read_bytes(path, "file", 5)


@pytest.fixture
def run(cli):
    """The command line under a deadline: (exit code, stderr)."""

    def go(*args: object) -> tuple[int, str]:
        with deadline(120):
            code, _, err = cli(*args)
        return code, err

    return go


def test_weights_dev_zero_says_not_a_regular_file(run, study, tmp_path):
    """The issue's `--weights /dev/zero`: "is a character device, not a regular file"."""
    zero = zero_device(tmp_path, "zero")
    code, err = run("splits", "generate", "imagefolder", "--root", str(study.root),
                    "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "s.json"),
                    "--weights", str(zero))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert str(zero) in lines[0] and "not a regular file" in lines[0]
    assert "not found" not in lines[0]


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_a_sweep_whose_splitfile_is_a_fifo_or_dev_zero_fails_in_one_line(run, tmp_path, kind):
    """`splitfile = "/dev/zero"` inside a sweep config (a clone here): refused, not read."""
    bad = node(tmp_path, kind, "split.json")
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(f'splitfile = "{bad}"\nroot = "data"\nresults = "out"\n'
                   '[[methods]]\nloss = "contrastive"\n')
    code, err = run("sweep", str(cfg))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert str(bad) in lines[0] and "not a regular file" in lines[0]


@pytest.mark.parametrize("args", [
    ["splits", "show", "{node}"],
    ["splits", "import-oodml", "{node}", "-o", "{tmp}/s.json"],
    ["sweep", "{node}"],
    ["report", "{node}", "--out", "{tmp}/rep"],
])
def test_cli_inputs_that_are_fifos_never_block(run, tmp_path, args):
    fifo = node(tmp_path, "fifo", "input.csv")
    argv = [a.format(node=fifo, tmp=tmp_path) for a in args]
    code, err = run(*argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert str(fifo) in lines[0] and "FIFO" in lines[0]


@pytest.mark.parametrize("dataset", ["omniglot", "imagefolder", "cub200"])
@pytest.mark.parametrize("kind", ["fifo", "zero", "link-to-zero"])
def test_a_dataset_root_that_is_a_fifo_or_device_is_one_line(tmp_path, dataset, kind):
    """A root named x.zip that is a FIFO or a /dev/zero clone: a DataError naming it (omniglot
    raised NotADirectoryError through the catch-all), never a read."""
    from oodml.data import load_dataset
    from oodml.errors import DataError

    root = node(tmp_path, kind, "x.zip")
    with deadline(), pytest.raises(DataError) as err:
        load_dataset(dataset, root)
    assert str(root) in str(err.value) and "\n" not in str(err.value)
