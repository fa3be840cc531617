"""Errors that the CLI turns into one clear line instead of a traceback."""


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message (its type name if it has none), for
    quoting a library's multi-line error inside a one-line message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


MAX_SHOWN = 80
"""Most characters of one value (a class name, a path, a token) quoted in an error message."""


def short(value: object, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters, with "..." and the value's full length, so a
    100 kB class name or token never floods a one-line error; short values are their repr."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, (str, bytes)) else ""
    return text[: max(limit - 3, 1)] + "..." + size


class OodmlError(Exception):
    """A user-facing error: the message names the file or value and what to do."""


class DataError(OodmlError):
    """A dataset root, layout, or image that does not match what a loader expects."""


class SplitFileError(OodmlError):
    """A split file that is malformed, edited by hand, or for another dataset."""


class ConfigError(OodmlError):
    """Bad command-line or config values (unknown names, wrong argument types)."""


class TrainingError(OodmlError):
    """Training that cannot go on (the loss diverged to NaN or inf)."""


class OutputError(OodmlError):
    """An output file or folder that cannot be written."""


class ResultsError(OodmlError):
    """A results table or run file that cannot be used as given."""


class ChecksumMismatch(SplitFileError):
    """A split file whose content does not match its recorded sha256 (edited by hand)."""
