"""Atomic file writes: a file is either the old version or the complete new one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

from oodml.errors import ConfigError, OutputError

_FILE_MODE = 0o666


@lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask, read once (by setting and restoring it: there is no read-only call,
    so reading it per write could race with files created by other threads)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file over ``path``.

    The temporary file lives in the same directory so the rename is atomic; the result gets
    the usual permissions of a new file (0666 less the umask), not mkstemp's owner-only 0600.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else exc.strerror or exc
        raise OutputError(f"cannot write {path}: {why}; choose a writable location") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, _FILE_MODE & ~_umask())
        os.replace(tmp_path, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def atomic_create(path: str | os.PathLike, write: Callable[[Path], None]) -> bool:
    """Like :func:`atomic_write`, but never replaces an existing ``path``: the complete file is
    linked into place only if nothing is there yet. Returns False (and leaves the existing file
    untouched) when ``path`` already exists, so two concurrent writers can never silently keep
    one result and lose the other."""
    path = Path(path)
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
    path: str | os.PathLike, what: str = "output", replace: bool = True
) -> Path:
    """Fail early, before long work, when the file ``path`` could not be written (its folder
    can neither be written nor created, or the path is a folder), or, with ``replace=False``,
    when it already exists (a split file someone may have published). Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file name")
    if not replace and path.exists():
        raise OutputError(f"{what} {path} already exists; pass --force to replace it, or "
                          "choose another --out")
    if _creatable(path.parent) is None:
        raise OutputError(f"cannot write {what} {path}: its folder is not writable")
    return path


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Like :func:`check_writable` for a folder that will hold outputs. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file; give a folder")
    if _creatable(path) is None:
        raise OutputError(f"cannot write to {what} {path}: it cannot be created or written")
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def read_text(path: str | os.PathLike, what: str = "file", max_bytes: int = 64 * 2**20) -> str:
    """The UTF-8 text of a small input file (a class list, a config); a missing, unreadable,
    oversized, non-regular or non-UTF-8 file is a one-line ConfigError naming it."""
    path = Path(path)
    try:
        if not path.is_file():
            why = "does not exist" if not path.exists() else "is not a regular file"
            raise ConfigError(f"{what} {path} {why}; check the path")
        if path.stat().st_size > max_bytes:
            raise ConfigError(f"{what} {path} is larger than {max_bytes} bytes; check the path")
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
