"""Every file oodml writes or reads for a user goes through here.

Writes are atomic (a file is either the old version or the complete new one) and land only on
a regular file or a new path: a symbolic link, folder, FIFO, socket or device at an output path
is a one-line :class:`OutputError`, whatever ``--force`` says, so an output never replaces
(or writes through) something that is not a plain file. Reads open the path without blocking,
check with ``fstat`` that it is a regular file and read at most a stated number of bytes, so a
FIFO never blocks and ``/dev/zero`` is never read: :func:`open_input` is the one reader.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from oodml.errors import ConfigError, OodmlError, OutputError

_FILE_MODE = 0o666
STDOUT = "-"
"""The output path that means standard output, for commands that can write there."""
_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_WRITE_ERRORS = (*_FULL, errno.EFBIG, errno.EIO)
"""Errors of the write itself: only these, found behind another library's exception (torch's
RuntimeError over its file's OSError), make that exception an OutputError."""


def kind_of(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words ("a FIFO (named pipe)")."""
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def special_kind(path: str | os.PathLike) -> str | None:
    """What is at ``path`` when it is anything but a regular file (looked at with ``lstat``,
    so a link is a link, wherever it points); None when nothing is there or a regular file."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return None if stat.S_ISREG(st.st_mode) else kind_of(st.st_mode)


def check_output_target(path: str | os.PathLike, what: str = "output") -> Path:
    """The one output rule: ``path`` must be a regular file or absent. Anything else (a link,
    folder, FIFO, socket, device) is a one-line OutputError, and no option changes that."""
    path = Path(path)
    kind = special_kind(path)
    if kind is not None:
        hint = (" (to write to standard output, where a command can, use -o -)"
                if kind == "a symbolic link" or kind == "a character device" else "")
        raise OutputError(f"{what} {path} is {kind}, not a regular file; oodml writes only to a "
                          f"regular file or a new path (--force does not change this){hint}; "
                          "choose another path")
    return path


def output_arg(raw: str | os.PathLike, what: str = "output") -> Path:
    """A user's output path as given (before ``Path`` turns "" into "."): an empty one is an
    error, never the current folder."""
    if not os.fspath(raw).strip():
        raise OutputError(f"{what} path is empty; give a name (use . for the current folder)")
    return Path(raw)


def _disk_why(exc: OSError) -> str:
    if exc.errno in _FULL:
        return (f"the disk is full ({exc.strerror or 'no space left on device'}); free disk "
                "space or choose another location")
    return str(exc.strerror or exc)


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError that caused ``exc`` (itself, or one in its cause/context chain), if any: a
    library writing through a Python file (torch.save) re-raises the disk's error as its own
    type."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, OSError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


@lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask, read once (by setting and restoring it: there is no read-only call,
    so reading it per write could race with files created by other threads)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *,
                 what: str = "") -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file over ``path``.

    The temporary file lives in the same directory so the rename is atomic; the result gets
    the usual permissions of a new file (0666 less the umask), not mkstemp's owner-only 0600.
    ``path`` must be a regular file or absent (checked before writing and again just before
    the rename); a failed write (the disk full, raised by ``write`` as an OSError or as another
    error caused by one) is a one-line OutputError naming ``what`` and ``path``, and the old
    file is kept.
    """
    path = check_output_target(path, what or "output")
    name = f"{what} {path}" if what else str(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else exc.strerror or exc
        raise OutputError(f"cannot write {name}: {why}; choose a writable location") \
            from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, _FILE_MODE & ~_umask())
        check_output_target(path, what or "output")
        os.replace(tmp_path, path)
    except OodmlError:
        raise
    except Exception as exc:
        cause = _os_error_in(exc)
        if cause is None or (cause is not exc and cause.errno not in _WRITE_ERRORS):
            raise
        raise OutputError(f"cannot write {name}: {_disk_why(cause)}") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


class _FdWriter(io.RawIOBase):
    """A raw binary writer on a file descriptor through ``os.write`` (so a library that writes
    to a Python file sees the system's own OSError, errno included)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        return os.write(self._fd, b)


def atomic_write_stream(path: str | os.PathLike, write: Callable[[BinaryIO], None], *,
                        what: str = "") -> Path:
    """:func:`atomic_write` for a writer that takes an open binary file (``torch.save``): the
    bytes go through ``os.write``, so a full disk is reported as such, not as the writer's own
    error (torch's "enforce fail at inline_container.cc")."""

    def to_file(tmp: Path) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_BINARY", 0))
        try:
            with io.BufferedWriter(_FdWriter(fd), buffer_size=1 << 20) as f:
                write(f)  # type: ignore[arg-type]
        finally:
            os.close(fd)

    return atomic_write(path, to_file, what=what)


def atomic_create(path: str | os.PathLike, write: Callable[[Path], None]) -> bool:
    """Like :func:`atomic_write`, but never replaces an existing ``path``: the complete file is
    linked into place only if nothing is there yet. Returns False (and leaves the existing file
    untouched) when ``path`` already exists, so two concurrent writers can never silently keep
    one result and lose the other."""
    path = check_output_target(path)
    staged = path.with_name(f".{path.name}.{os.getpid()}.staged")
    atomic_write(staged, write)
    try:
        os.link(staged, path)
    except FileExistsError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        staged.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block, so
    read-modify-write steps of concurrent processes on one folder run one at a time."""
    import fcntl

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE & ~_umask())
    except OSError as exc:
        raise OutputError(f"cannot lock {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _creatable(folder: Path) -> Path | None:
    """The nearest existing ancestor of ``folder`` (itself included) if files can be created
    there (tried with a temporary file, removed at once: permission bits say nothing for root
    or on read-only mounts); None otherwise."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return None
        probe = probe.parent
    if not probe.is_dir():
        return None
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError:
        return None
    return probe


def check_writable(
    path: str | os.PathLike, what: str = "output", replace: bool = True, *,
    stdout: bool = False,
) -> Path:
    """Fail early, before long work, when the file ``path`` could not be written: it is not a
    regular file (a link, folder, FIFO, device: :func:`check_output_target`), its folder can
    neither be written nor created, or, with ``replace=False`` (no ``--force``), it already
    exists. ``-`` (:data:`STDOUT`) is accepted only where ``stdout`` says the command can
    write there. Creates nothing."""
    path = output_arg(path, what)
    if os.fspath(path) == STDOUT:
        if stdout:
            return path
        raise OutputError(f"{what} cannot be written to standard output (-); give a file name")
    if path.is_dir() and not path.is_symlink():
        raise OutputError(f"{what} {path} is a folder; give a file name")
    check_output_target(path, what)
    if not replace and path.exists():
        raise OutputError(f"{what} {path} already exists; pass --force to replace it, or "
                          "choose another --out")
    if _creatable(path.parent) is None:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else "its folder is not writable"
        raise OutputError(f"cannot write {what} {path}: {why}")
    return path


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Like :func:`check_writable` for a folder that will hold outputs. Creates nothing."""
    path = output_arg(path, what)
    if path.exists() and not path.is_dir():
        kind = special_kind(path) or "a file"
        raise OutputError(f"{what} {path} is {kind}; give a folder")
    if _creatable(path) is None:
        raise OutputError(f"cannot write to {what} {path}: it cannot be created or written")
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, what: str = "") -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data), what=what)


def atomic_write_text(path: str | os.PathLike, text: str, *, what: str = "") -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"), what=what)


MAX_INPUT_BYTES = 64 * 2**20
"""Default bound of a small input (a class list, a config, a table)."""


@contextlib.contextmanager
def open_input(path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_INPUT_BYTES,
               *, error: type[OodmlError] = ConfigError) -> Iterator[BinaryIO]:
    """The one way oodml opens a user's input file: opened non-blocking (a FIFO never waits
    for a writer), checked with ``fstat`` to be a regular file (a device such as /dev/zero, a
    FIFO, a socket or a folder is refused, also behind a symbolic link) of at most
    ``max_bytes``; every problem is a one-line ``error`` naming ``what`` and ``path``.
    Callers read at most ``max_bytes`` (:func:`read_bytes`)."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist; check the path") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is {kind_of(st.st_mode)}, not a regular file; give "
                        "the path of a file")
        if st.st_size > max_bytes:
            raise error(f"{what} {path} has {st.st_size} bytes, more than the {max_bytes} "
                        f"bytes a {what} may have; check the path")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def read_bytes(path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_INPUT_BYTES,
               *, error: type[OodmlError] = ConfigError) -> bytes:
    """All bytes of a user's input file, through :func:`open_input` (at most ``max_bytes``,
    even if the file grows while it is read)."""
    with open_input(path, what, max_bytes, error=error) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise error(f"{what} {path} has more than the {max_bytes} bytes a {what} may have; "
                    "check the path")
    return data


def read_text(path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_INPUT_BYTES,
              *, error: type[OodmlError] = ConfigError) -> str:
    """The UTF-8 text of a small input file (a class list, a config); a missing, unreadable,
    oversized, non-regular or non-UTF-8 file is a one-line ``error`` naming it."""
    data = read_bytes(path, what, max_bytes, error=error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None


def check_input_file(path: str | os.PathLike, what: str = "file", advice: str = "check the path",
                     *, error: type[OodmlError] = ConfigError) -> Path:
    """``path`` is a regular file (following links), or a one-line ``error`` saying whether it
    is missing or what else it is (``--weights /dev/zero``: "a character device")."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {path} not found; {advice}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}; {advice}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {path} is {kind_of(st.st_mode)}, not a regular file; {advice}")
    return path
