"""Structural check of one run file (``RESULTS_DIR/runs/<key>.json``) before its rows are used.

A run file is ``{"key": str, "config": str, "rows": [row, ...]}`` where every row is an object
holding every results column: integer columns as JSON integers, float columns as numbers or
null (null reads as NaN), the others as strings. A hand-edited or damaged file such as
``"rows": [1]`` is a one-line ConfigError naming the file and the first bad field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from oodml.errors import ConfigError


def check_run_doc(
    doc: Any,
    path: str | Path,
    columns: Sequence[str] | None = None,
    dtypes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Return ``doc`` if it is a well-formed run file, else raise a one-line ConfigError.

    ``columns`` and ``dtypes`` (column -> "int64" | "float64") default to the results table's
    (``oodml.train.results.COLUMNS`` and its dtypes); columns not in ``dtypes`` are strings."""
    if columns is None or dtypes is None:
        from oodml.train import results

        columns = results.COLUMNS if columns is None else columns
        dtypes = getattr(results, "_DTYPES", {}) if dtypes is None else dtypes

    def bad(where: str, what: str) -> ConfigError:
        return ConfigError(
            f"result file {path}: {where} {what}; delete the file to rerun that run"
        )

    if not isinstance(doc, dict):
        raise bad("the document", "is not a JSON object")
    for key in ("key", "config"):
        if not isinstance(doc.get(key), str):
            raise bad(f"'{key}'", "is missing or not a string")
    rows = doc.get("rows")
    if not isinstance(rows, list):
        raise bad("'rows'", "is missing or not a list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise bad(f"rows[{i}]", f"is {type(row).__name__} {str(row)[:40]!r}, not an object")
        missing = [c for c in columns if c not in row]
        if missing:
            raise bad(f"rows[{i}]", f"lacks column {missing[0]!r}")
        for col in columns:
            value = row[col]
            kind = dtypes.get(col, "str")
            if kind == "int64":
                ok = type(value) is int and value.bit_length() <= 63
            elif kind == "float64":
                ok = value is None or (type(value) in (int, float))
            else:
                ok = isinstance(value, str)
            if not ok:
                want = {"int64": "an integer", "float64": "a number or null"}.get(kind, "a string")
                raise bad(f"rows[{i}].{col}", f"is {str(value)[:40]!r}, not {want}")
    return doc
