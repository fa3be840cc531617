"""The `oodml` entry point: usage errors and user errors are one message and exit 2."""

from __future__ import annotations

import pytest
import typer

from oodml import __version__
from oodml_cli import COMMANDS, app


def test_no_command_prints_the_help_and_no_empty_error(cli) -> None:
    for args in ((), ("splits",)):
        code, out, err = cli(*args)
        assert "Usage" in out + err and "error:" not in err, args


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("features", "--bogus"), "No such option: --bogus"),
        (("features",), "Missing argument"),
        (("splits", "show"), "Missing argument"),
        (("nosuchcommand",), "No such command"),
        (("evaluate", "x.json", "--root", "r", "--loss", "triplet", "--epochs", "many"),
         "Invalid value for '--epochs'"),
    ],
)
def test_usage_errors_are_a_message_and_exit_2(cli, args, needle) -> None:
    code, _, err = cli(*args)
    assert code == 2 and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "--help" in err


def test_user_errors_are_one_red_line(cli, tmp_path) -> None:
    code, _, err = cli("splits", "show", str(tmp_path / "missing.json"))
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert "missing.json" in err


def test_version_and_every_command_has_help(cli) -> None:
    code, out, _ = cli("--version")
    assert code == 0 and __version__ in out
    for name in ("features", "fid", "splits", "evaluate", "fewshot", "losses", "report", "sweep"):
        code, out, _ = cli(name, "--help")
        assert code == 0 and "Usage" in out, name
    registered = typer.main.get_command(app).commands
    assert set(COMMANDS) == {c.name for c in registered.values()}


def test_unwritable_outputs_fail_before_any_work(cli, tmp_path, omniglot_zip) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = tmp_path / "cache"
    code, _, err = cli("splits", "generate", "omniglot", "--root", str(omniglot_zip),
                       "--cache", str(cache), "-o", str(blocker / "ladder.json"))
    assert code == 2 and "cannot write split file" in err and "ladder.json" in err
    assert not cache.exists()  # failed before extracting anything
    code, _, err = cli("report", str(tmp_path), "--out", str(blocker))
    assert code == 2 and "is a file" in err


def test_atomic_write_errors_are_output_errors(tmp_path) -> None:
    from oodml.errors import OutputError
    from oodml.fileio import atomic_write_text

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write_text(blocker / "sub" / "f.txt", "data")

    def failing(path):
        path.write_text("half")
        raise OSError(28, "No space left on device")

    from oodml.fileio import atomic_write

    target = tmp_path / "kept.txt"
    target.write_text("old")
    with pytest.raises(OutputError, match="No space left"):
        atomic_write(target, failing)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "a-file", "kept.txt"]


def test_library_warnings_are_one_line_on_the_command_line(cli, capsys, monkeypatch) -> None:
    import warnings

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    cli("--version")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("cache entry damaged\n  details; recomputing", RuntimeWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err == "warning: cache entry damaged details; recomputing\n"


def test_progress_off_a_terminal_is_a_line_per_tenth_once_work_is_slow(capsys, monkeypatch):
    """A log file gets no bar: a line per tenth of the total (time so far, time left) once a
    task has run LOG_AFTER_S; quick tasks print nothing."""
    from oodml_cli import ui

    with ui.Bars() as bars:
        quick = bars.task("quick", total=4)
        for _ in range(4):
            quick.advance()
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(ui, "LOG_AFTER_S", 0.0)
    with ui.Bars() as bars:
        slow = bars.task("walk", total=20)
        for _ in range(20):
            slow.advance()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[0].startswith("walk: 2/20 after ")
    assert lines[-1].startswith("walk: 20/20 after ") and lines[-1].endswith("0m00s left")
    with ui.Bars() as bars:  # a resumed task counts only the work done since it started
        resumed = bars.task("epochs", total=10, completed=5)
        for _ in range(5):
            resumed.advance()
        resumed.update(completed=0)  # reset: reports again from the start
        for _ in range(10):
            resumed.advance()
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split(" after")[0] for ln in lines] == [
        *(f"epochs: {i}/10" for i in range(6, 11)), *(f"epochs: {i}/10" for i in range(1, 11))]
