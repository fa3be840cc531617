"""Errors that the CLI turns into one clear line instead of a traceback."""


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
