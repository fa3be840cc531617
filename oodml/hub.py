"""Weights files in the torch hub cache, downloaded the way torchvision does when missing.

A checkpoint lives at ``$TORCH_HOME/hub/checkpoints/<file>`` (torch's own rule, so files that
torchvision or pytorch-fid already fetched are found and reused). When it is missing and
downloads are allowed, it is streamed into a temporary file in that folder, checked against its
sha256 (the full digest, or the hex prefix that torchvision writes into file names such as
``resnet50-0676ba61.pth``), and only then renamed to its final name: an interrupted, truncated
or corrupt download never leaves a file that looks complete.

Downloads are off when ``offline=True`` is passed or ``$OODML_OFFLINE`` is set to 1/true/yes;
then nothing touches the network and a missing file is a one-line error naming the file and
where to put it. Progress goes to a callback (``progress(done_bytes, total_bytes_or_None)``);
this module draws nothing itself.

Layer: sits below data and features; imports only ``oodml.errors`` and ``oodml.fileio``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from oodml.errors import ConfigError
from oodml.fileio import check_output_target, check_writable_dir

Progress = Callable[[int, "int | None"], None]

OFFLINE_ENV = "OODML_OFFLINE"
CHUNK = 1 << 16
TIMEOUT_S = 60.0
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")
_default_progress: Progress | None = None


class DownloadError(ConfigError):
    """A weights file that could not be downloaded or failed its hash check."""


def set_default_progress(progress: Progress | None) -> None:
    """Progress callback used by downloads that are not given one (the CLI sets a bar here)."""
    global _default_progress
    _default_progress = progress


def is_offline(offline: bool | None = None) -> bool:
    """True when downloads are off: ``offline`` if given, else ``$OODML_OFFLINE`` (1/true/yes)."""
    if offline is not None:
        return offline
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch/hub/checkpoints`` by default), as
    ``torch.hub.get_dir()`` resolves it."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def hash_prefix_of(filename: str) -> str | None:
    """The sha256 prefix torchvision embeds in a checkpoint name (``name-<hex>.ext``), if any."""
    found = _HASH_IN_NAME.search(filename)
    return found.group(1) if found else None


_sha_memo: dict[tuple[str, int, int, int], str] = {}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, remembered per (path, inode, size, mtime) within the process
    so that locating and then loading the same 100 MB weights file hashes it once."""
    st = os.stat(path)
    key = (str(Path(path).absolute()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _sha_memo:
        return _sha_memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    _sha_memo[key] = h.hexdigest()
    return _sha_memo[key]


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str,
    *,
    progress: Progress | None = None,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download ``url`` to ``dest`` atomically, accepting it only if its sha256 starts with
    ``sha256`` (a full digest or a prefix of at least 8 hex digits).

    The bytes go to a hidden temporary file beside ``dest``; a short read (fewer bytes than
    the server's Content-Length), a dropped connection or a hash mismatch removes it and
    raises DownloadError, so ``dest`` is either absent/unchanged or the complete, checked file.
    """
    expected = sha256.lower()
    if not re.fullmatch(r"[0-9a-f]{8,64}", expected):
        raise ConfigError(f"expected sha256 {sha256!r} for {url} is not 8 to 64 hex digits")
    dest = Path(dest)
    check_writable_dir(dest.parent, "torch hub checkpoints folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    tmp_path = Path(tmp)
    report = progress if progress is not None else _default_progress
    try:
        h = hashlib.sha256()
        done = 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    if report:
                        report(0, total)
                    while block := resp.read(CHUNK):
                        out.write(block)
                        h.update(block)
                        done += len(block)
                        if report:
                            report(done, total)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                reason = exc if isinstance(exc, urllib.error.HTTPError) else (
                    getattr(exc, "reason", None) or exc
                )
                raise DownloadError(
                    f"download of {url} failed after {done} bytes: {reason}"
                ) from None
            if total is not None and done != total:
                raise DownloadError(
                    f"download of {url} was cut off at {done} of {total} bytes; try again"
                )
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if not digest.startswith(expected):
            raise DownloadError(
                f"download of {url} has sha256 {digest}, expected {expected}; the file was "
                "discarded (a corrupt download or a changed upstream file)"
            )
        os.chmod(tmp_path, 0o644)
        check_output_target(dest, "downloaded weights")
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return dest


def fetch_checkpoint(
    filename: str,
    url: str,
    sha256: str | None = None,
    *,
    what: str,
    where: str,
    offline: bool | None = None,
    progress: Progress | None = None,
    also: str = "",
) -> Path:
    """The hub-cache path of ``filename``, downloaded from ``url`` first if it is missing.

    ``sha256`` defaults to the prefix in ``filename``. Offline, or when the download fails, a
    one-line error names the file, where to put it and where it comes from (``where``);
    ``also`` is one more remedy to offer (e.g. a package that ships the weights).
    """
    path = checkpoints_dir() / filename
    if path.is_file():
        return path
    advice = f"copy {filename} ({where}) to {path} or pass --weights PATH"
    if also:
        advice = f"{also}, or {advice}"
    if is_offline(offline):
        raise ConfigError(
            f"{what} weights {path} not found and downloads are off ({OFFLINE_ENV}=1 or "
            f"--offline); {advice}"
        )
    expected = sha256 or hash_prefix_of(filename)
    if expected is None:
        raise ConfigError(f"no sha256 known for {filename}; cannot check a download; {advice}")
    try:
        return download(url, path, expected, progress=progress)
    except DownloadError as exc:
        raise DownloadError(f"{what} weights {path} not found and {exc}; {advice}") from None
