"""The results table: one small JSON file per finished run, merged into results.parquet/.csv.

Each finished (method, split, seed[, shots]) run writes ``RESULTS_DIR/runs/<key>.json``
atomically; the table is always rebuilt from those files, so a killed study resumes without
losing or duplicating rows. Columns and metric names follow docs/DESIGN.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from oodml.errors import ConfigError
from oodml.fileio import atomic_write, atomic_write_text

COLUMNS = (
    "splitfile_sha256",
    "dataset",
    "split_id",
    "distance",
    "method",
    "config",
    "seed",
    "protocol",
    "shots",
    "metric",
    "value",
    "std",
    "n_episodes",
    "wall_time_s",
    "device",
    "epochs",
)
METRICS = (
    "recall@1",
    "recall@2",
    "recall@4",
    "recall@8",
    "nmi",
    "map@r",
    "r_precision",
    "map@1000",
)
RUNS_DIR = "runs"
_DTYPES = {
    "split_id": "int64",
    "distance": "float64",
    "seed": "int64",
    "shots": "int64",
    "value": "float64",
    "std": "float64",
    "n_episodes": "int64",
    "wall_time_s": "float64",
    "epochs": "int64",
}


def run_path(results_dir: str | Path, key: str) -> Path:
    return Path(results_dir) / RUNS_DIR / f"{key}.json"


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def write_run(results_dir: str | Path, key: str, config: str, rows: list[dict[str, Any]]) -> Path:
    """Atomically record a finished run (its config JSON string and its table rows)."""
    for row in rows:
        missing = set(COLUMNS).difference(row)
        if missing:
            raise ValueError(f"result row lacks columns {sorted(missing)}")
    doc = {"key": key, "config": config, "rows": [{c: _clean(r[c]) for c in COLUMNS} for r in rows]}
    return atomic_write_text(
        run_path(results_dir, key), json.dumps(doc, sort_keys=True, indent=1) + "\n"
    )


def read_run(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        rows = doc["rows"]
        for row in rows:
            if row.get("std") is None:
                row["std"] = float("nan")
        return doc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"result file {path} is unreadable ({exc}); delete it to rerun that run"
        ) from None


def finished_rows(
    results_dir: str | Path, key: str, config: str, splitfile_sha256: str | None = None
) -> list[dict[str, Any]] | None:
    """Rows of a finished run, or None when it has not finished. A finished run under the same
    key with another config, or measured on another split file (when ``splitfile_sha256`` is
    given), is an error: its rows must not be mixed with the new ones."""
    path = run_path(results_dir, key)
    if not path.is_file():
        return None
    doc = read_run(path)
    if doc["config"] != config:
        raise ConfigError(
            f"{path} holds run {key!r} with a different config; name this method differently "
            "(--method NAME) or use another --out folder"
        )
    rows = list(doc["rows"])
    if splitfile_sha256 is not None:
        other = sorted({r["splitfile_sha256"] for r in rows} - {splitfile_sha256})
        if other:
            raise ConfigError(
                f"{path} holds run {key!r} measured on split file {other[0][:12]}, not on "
                f"{splitfile_sha256[:12]}; use another --out folder or delete that run file"
            )
    return rows


def _metric_rank(name: str) -> tuple[int, str]:
    return (METRICS.index(name), "") if name in METRICS else (len(METRICS), name)


def rows_to_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows in the canonical column order and dtypes, sorted deterministically."""
    df = pd.DataFrame(list(rows), columns=list(COLUMNS))
    df = df.astype(_DTYPES) if len(df) else df.astype(_DTYPES, errors="ignore")
    if len(df):
        df["_m"] = [_metric_rank(m) for m in df["metric"]]
        df = df.sort_values(
            ["method", "protocol", "split_id", "seed", "shots", "_m"], kind="stable"
        ).drop(columns="_m")
    return df.reset_index(drop=True)


def collect_rows(results_dir: str | Path) -> list[dict[str, Any]]:
    runs = Path(results_dir) / RUNS_DIR
    rows: list[dict[str, Any]] = []
    for path in sorted(runs.rglob("*.json")) if runs.is_dir() else []:
        rows.extend(read_run(path)["rows"])
    return rows


def merge_results(results_dir: str | Path) -> pd.DataFrame:
    """Rebuild ``results.parquet`` and ``results.csv`` from every finished run file."""
    results_dir = Path(results_dir)
    df = rows_to_frame(collect_rows(results_dir))
    atomic_write(results_dir / "results.parquet", lambda p: df.to_parquet(p, index=False))
    atomic_write(results_dir / "results.csv", lambda p: df.to_csv(p, index=False))
    return df


def config_json(config: Mapping[str, Any]) -> str:
    """The canonical JSON string stored in the ``config`` column."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
