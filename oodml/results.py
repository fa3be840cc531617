"""The one results schema: run files, the merged table, and reading tables back for reports.

A training run (:mod:`oodml.train.run`) records each finished (method, split, seed[, shots]) as
``RESULTS_DIR/runs/<key>.json``, created atomically and never over another run's file; the
table ``results.parquet``/``results.csv`` is always rebuilt from those files under a lock, so a
killed or concurrent study neither loses nor duplicates a row. Only files at the paths this
layout writes are read (``runs/<method>/<protocol>/split<NNN>_seed<S>[_shots<N>].json``, each
recording its own key): an older experiment or any other JSON kept elsewhere under ``runs/``
is never merged in. Reports
(:mod:`oodml.report`) read tables back through :func:`load_results`, which refuses anything
that would make a silently wrong plot (mixed split files, duplicates, NaN or inf values).

Columns: ``splitfile_sha256, dataset, split_id, distance, method, config (JSON string), seed,
protocol ("zeroshot" | "fewshot"), shots, metric, value, std, n_episodes, wall_time_s, device,
epochs, train, train_seed``. Metric names are those of :data:`oodml.metrics.DEFAULT_METRICS`
(plus any other registered metric); a size-controlled value is named ``<metric>/n<N>``.

``train`` says what the model was trained on: ``"all"`` (the split's train classes) or
``"n<N>"`` (train-size-controlled: N classes drawn from them with seed ``train_seed``; -1 for
``"all"``), the training-side twin of ``<metric>/n<N>``. Tables and run files written before
these two columns existed read as ``train="all"``, ``train_seed=-1``.

The optional interval columns ``ci_low, ci_high, class_values`` (see :data:`OPTIONAL_COLUMNS`)
are absent from older tables and run files, which stay readable.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from oodml.errors import ConfigError, ResultsError
from oodml.fileio import (
    atomic_create,
    atomic_write,
    atomic_write_text,
    check_output_target,
    check_writable_dir,
    locked,
    open_input,
    read_text,
)
from oodml.metrics import DEFAULT_METRICS as METRIC_ORDER

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
    "train",
    "train_seed",
    "ci_low",
    "ci_high",
    "class_values",
)
OPTIONAL_COLUMNS: dict[str, Any] = {
    "ci_low": float("nan"),
    "ci_high": float("nan"),
    "class_values": "",
}
"""Columns added after the first schema, with the value an older row gets. ``ci_low`` and
``ci_high``: the 95% interval of this run's value from a bootstrap over its test classes (a
class's queries stay together; :mod:`oodml.metrics.intervals`), NaN where the metric is not a
mean over queries (NMI) or the row predates the columns. ``class_values``: JSON
``{"classes": [...], "n": [...], "v": [...]}``, the test classes, their counted queries and
the class means of the metric (what reports resample to combine seeds and to pair splits and
methods); size-controlled metrics add ``"draws"`` (class indices of each gallery draw) and
give ``"v"`` per draw (R x C); "" when absent."""
PROTOCOLS = ("zeroshot", "fewshot")
RUN_KEY = ("method", "config", "protocol", "shots", "split_id", "seed", "metric", "train",
           "train_seed")
TRAIN_ALL = "all"
# Columns added after the first release, with the value every older row means.
LATER_COLUMNS = {"train": TRAIN_ALL, "train_seed": -1}
RUNS_DIR = "runs"
LOCK_FILE = ".results.lock"
MAX_RUN_FILE_BYTES = 64 * 2**20
MAX_TABLE_BYTES = 4 * 2**30
_METHOD_DIR = re.compile(r"[A-Za-z0-9_+=-][A-Za-z0-9._+=-]*")
_RUN_FILE = {
    "zeroshot": re.compile(r"split\d{3,}_seed\d+(_train\d+_draw\d+)?\.json"),
    "fewshot": re.compile(r"split\d{3,}_seed\d+(_train\d+_draw\d+)?_shots\d+\.json"),
}
_INT_COLUMNS = ("split_id", "seed", "shots", "n_episodes", "epochs", "train_seed")
_FLOAT_COLUMNS = ("distance", "value", "std", "wall_time_s", "ci_low", "ci_high")
_STR_COLUMNS = ("splitfile_sha256", "dataset", "method", "config", "protocol", "metric", "device",
                "train", "class_values")
_DTYPES = {**{c: "int64" for c in _INT_COLUMNS}, **{c: "float64" for c in _FLOAT_COLUMNS}}

__all__ = [
    "COLUMNS",
    "METRIC_ORDER",
    "ResultsError",
    "available_metrics",
    "config_json",
    "finished_rows",
    "load_results",
    "merge_results",
    "read_results",
    "run_path",
    "select_metrics",
    "validate",
    "write_run",
]


def run_path(results_dir: str | Path, key: str) -> Path:
    return Path(results_dir) / RUNS_DIR / f"{key}.json"


def config_json(config: Mapping[str, Any]) -> str:
    """The canonical JSON string stored in the ``config`` column."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def train_label(n: int | None) -> str:
    """The ``train`` column: ``"all"`` for the split's whole train set, else ``"n<N>"``."""
    return TRAIN_ALL if n is None else f"n{n}"


def is_train_label(text: str) -> bool:
    return text == TRAIN_ALL or (text[:1] == "n" and text[1:].isdigit() and int(text[1:]) > 0)


def _check_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise ResultsError(f"{where}: a result row is {type(row).__name__}, not a table row")
    row = {**LATER_COLUMNS, **OPTIONAL_COLUMNS, **row}
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise ResultsError(f"{where}: a result row lacks columns {', '.join(missing)}")
    for c in _INT_COLUMNS:
        if isinstance(row[c], bool) or not isinstance(row[c], int):
            raise ResultsError(f"{where}: column {c}={row[c]!r} must be an integer")
    for c in _FLOAT_COLUMNS:
        v = row[c]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ResultsError(f"{where}: column {c}={v!r} must be a number")
    for c in _STR_COLUMNS:
        if not isinstance(row[c], str):
            raise ResultsError(f"{where}: column {c}={row[c]!r} must be a string")
    return dict(row)


def _run_doc(key: str, config: str, rows: list[dict[str, Any]]) -> str:
    checked = [_check_row(row, f"run {key}") for row in rows]
    doc = {"key": key, "config": config,
           "rows": [{c: _clean(r[c]) for c in COLUMNS} for r in checked]}
    return json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n"


def write_run(results_dir: str | Path, key: str, config: str, rows: list[dict[str, Any]]) -> Path:
    """Record a finished run (its config JSON and its rows), never over another run's file.

    When a concurrent run under the same key finished first, an identical config keeps the
    first file; another config keeps both: this run's rows go to ``<key>.json.conflict-<pid>``
    beside it, and a ConfigError says so (the merged table never mixes the two configs).
    """
    path = run_path(results_dir, key)
    text = _run_doc(key, config, rows)
    if atomic_create(path, lambda p: p.write_text(text, encoding="utf-8")):
        return path
    if read_run(path)["config"] == config:
        return path
    kept = path.with_name(f"{path.name}.conflict-{os.getpid()}")
    atomic_write_text(kept, text)
    raise ConfigError(
        f"another run with a different config finished {key!r} first in {results_dir}; this "
        f"run's rows are kept in {kept}; give the method another name (method) or use another "
        "results folder"
    )


def read_run(path: Path) -> dict[str, Any]:
    """A run file's ``{"key", "config", "rows"}``, every row checked against the schema."""
    try:
        doc = json.loads(read_text(path, "result file", MAX_RUN_FILE_BYTES, error=ResultsError))
    except (ValueError, RecursionError) as exc:
        raise ResultsError(
            f"result file {path} is unreadable ({type(exc).__name__}); delete it to rerun that run"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), str):
        raise ResultsError(f"result file {path} is not a run record; delete it to rerun that run")
    rows = doc.get("rows")
    if not isinstance(rows, list):
        raise ResultsError(f"result file {path} has no list of rows; delete it to rerun that run")
    checked = []
    for row in rows:
        row = _check_row(row, f"result file {path}")
        for col in ("std", "ci_low", "ci_high"):
            if row.get(col) is None:
                row[col] = float("nan")
        checked.append(row)
    doc["rows"] = checked
    return doc


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
            "(method) or use another results folder"
        )
    rows = list(doc["rows"])
    if splitfile_sha256 is not None:
        other = sorted({r["splitfile_sha256"] for r in rows} - {splitfile_sha256})
        if other:
            raise ConfigError(
                f"{path} holds run {key!r} measured on split file {other[0][:12]}, not on "
                f"{splitfile_sha256[:12]}; use another results folder or delete that run file"
            )
    return rows


def metric_rank(name: str) -> tuple[int, int, str]:
    """Sort key: canonical metrics first in their order, a size-controlled ``m/nN`` right after
    ``m``, unknown names last."""
    base, _, variant = name.partition("/")
    pos = METRIC_ORDER.index(base) if base in METRIC_ORDER else len(METRIC_ORDER)
    return (pos, 1 if variant else 0, name)


def rows_to_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows in the canonical column order and dtypes, sorted deterministically."""
    df = pd.DataFrame(list(rows), columns=list(COLUMNS))
    df = df.astype(_DTYPES) if len(df) else df.astype(_DTYPES, errors="ignore")
    if len(df):
        df["_m"] = [metric_rank(m) for m in df["metric"]]
        df = df.sort_values(
            ["method", "protocol", "train", "split_id", "seed", "train_seed", "shots", "_m"],
            kind="stable",
        ).drop(columns="_m")
    return df.reset_index(drop=True)


def run_files(results_dir: str | Path) -> list[tuple[str, Path]]:
    """(key, path) of every run file in the layout :func:`run_path` writes, sorted: exactly
    ``runs/<method>/<protocol>/<name>.json`` with a method folder name a method may have, a
    known protocol and a run file name of that protocol. Anything else (an older experiment
    copied under ``runs/``, a file deeper or shallower, a link) is not a run of this folder."""
    runs = Path(results_dir) / RUNS_DIR
    found: list[tuple[str, Path]] = []
    for method in _plain_dirs(runs) if runs.is_dir() else []:
        if not _METHOD_DIR.fullmatch(method.name):
            continue
        for protocol in _plain_dirs(method):
            pattern = _RUN_FILE.get(protocol.name)
            if pattern is None:
                continue
            for entry in sorted(os.scandir(protocol), key=lambda e: e.name):
                if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                    key = f"{method.name}/{protocol.name}/{entry.name[:-len('.json')]}"
                    found.append((key, Path(entry.path)))
    return found


def _plain_dirs(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` (not links to folders), sorted by name."""
    return [Path(e.path) for e in sorted(os.scandir(folder), key=lambda e: e.name)
            if e.is_dir(follow_symlinks=False)]


def collect_rows(results_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of every run file of the layout (:func:`run_files`); a file whose recorded key is
    not the one its path names (copied or moved by hand) is an error naming it."""
    rows: list[dict[str, Any]] = []
    for key, path in run_files(results_dir):
        doc = read_run(path)
        if doc.get("key") != key:
            raise ResultsError(f"result file {path} records run {str(doc.get('key'))[:100]!r}, "
                               f"not {key!r} as its path says; move it back or delete it")
        rows.extend(doc["rows"])
    return rows


TABLE_FILES = ("results.parquet", "results.csv")


def check_results_folder(results_dir: str | Path) -> Path:
    """Fail before any training when ``results_dir`` cannot take the tables: it is not a
    writable folder, or ``results.parquet``/``results.csv`` there is not a regular file (a
    link, a FIFO, a device: outputs never replace those). Creates nothing."""
    results_dir = check_writable_dir(results_dir, "results folder")
    for name in TABLE_FILES:
        check_output_target(results_dir / name, "results table")
    return results_dir


def merge_results(results_dir: str | Path) -> pd.DataFrame:
    """Rebuild ``results.parquet`` and ``results.csv`` from every finished run file (under the
    folder's lock, so concurrent studies in one folder always leave a table with every run)."""
    results_dir = Path(results_dir)
    with locked(results_dir / LOCK_FILE):
        df = rows_to_frame(collect_rows(results_dir))
        atomic_write(results_dir / "results.parquet", lambda p: df.to_parquet(p, index=False))
        atomic_write(results_dir / "results.csv", lambda p: df.to_csv(p, index=False))
    return df


def _resolve(path: Path) -> Path:
    if path.is_dir():
        for name in ("results.parquet", "results.csv"):
            if (path / name).is_file():
                return path / name
        raise ResultsError(f"{path}: no results.parquet or results.csv in this folder")
    if not os.path.lexists(path):
        raise ResultsError(f"{path}: results table not found; pass a .parquet/.csv file or folder")
    return path


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read one results table (.parquet or .csv, or a folder holding one) and check its columns."""
    path = _resolve(Path(path))
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ResultsError(f"{path}: unknown results format {suffix!r}; use .parquet or .csv")
    try:
        with open_input(path, "results table", MAX_TABLE_BYTES, error=ResultsError) as f:
            if suffix == ".parquet":
                df = pd.read_parquet(f)
            else:
                numeric_na = {c: ["", "nan", "NaN"] for c in COLUMNS if c not in _STR_COLUMNS}
                df = pd.read_csv(f, dtype={c: str for c in _STR_COLUMNS},
                                 keep_default_na=False, na_values=numeric_na)
    except ResultsError:
        raise
    except Exception as exc:  # pyarrow and pandas raise many types for a damaged file
        raise ResultsError(f"{path}: not a readable {suffix[1:]} table ({type(exc).__name__}); "
                           "rebuild it with `oodml evaluate` on its results folder") from None
    df = with_later_columns(df)
    for col, default in OPTIONAL_COLUMNS.items():
        if col not in df.columns:
            df[col] = default
    if "class_values" in df.columns:
        df["class_values"] = df["class_values"].fillna("").astype(str)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: missing columns {', '.join(missing)}; "
                           "is this a results table from `oodml evaluate`?")
    if df.empty:
        raise ResultsError(f"{path}: results table is empty; run `oodml evaluate` first")
    df = df.loc[:, list(COLUMNS)].copy()
    df["source"] = str(path)
    return df


def with_later_columns(df: pd.DataFrame) -> pd.DataFrame:
    """A table written before a later column existed, with the value its rows mean there."""
    absent = {c: v for c, v in LATER_COLUMNS.items() if c not in df.columns}
    return df.assign(**absent) if absent else df


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Coerce column types so CSV and parquet tables compare equal."""
    df = df.copy()
    try:
        for col in _STR_COLUMNS:
            df[col] = df[col].astype(str)
        for col in _INT_COLUMNS:
            df[col] = pd.to_numeric(df[col]).astype("int64")
        for col in _FLOAT_COLUMNS:
            df[col] = pd.to_numeric(df[col]).astype("float64")
    except (ValueError, TypeError) as exc:
        raise ResultsError(f"results table has a value of the wrong type ({exc})") from None
    return df


def _where(row: pd.Series) -> str:
    return (f"{row['source']}: {row['method']} split {row['split_id']} seed {row['seed']} "
            f"{row['metric']}")


def validate(df: pd.DataFrame, *, splitfile_sha256: str | None = None) -> pd.DataFrame:
    """Check that a (concatenated) table describes one ladder with no duplicated runs and no
    NaN or infinite distances or values."""
    if df.empty:
        raise ResultsError("no result rows to report on; run `oodml evaluate` first")
    df = with_later_columns(df)
    missing = [c for c in COLUMNS if c not in df.columns and c not in OPTIONAL_COLUMNS]
    if missing:
        raise ResultsError(f"results table lacks columns {', '.join(missing)}")
    if "source" not in df.columns:
        df = df.assign(source="<table>")
    for col, default in OPTIONAL_COLUMNS.items():
        if col not in df.columns:
            df = df.assign(**{col: default})
    df = normalise(df)
    shas = sorted(df["splitfile_sha256"].unique())
    if len(shas) > 1:
        per = df.groupby("splitfile_sha256")["source"].agg(lambda s: ", ".join(sorted(set(s))))
        detail = "; ".join(f"{sha[:12]}… in {src}" for sha, src in per.items())
        raise ResultsError(f"results come from {len(shas)} different split files ({detail}); "
                           "make one report per split file")
    if splitfile_sha256 is not None and shas[0] != splitfile_sha256:
        raise ResultsError(f"results were made with split file {shas[0][:12]}… but --splits is "
                           f"{splitfile_sha256[:12]}…; pass the split file used for training")
    bad_protocol = sorted(set(df["protocol"]) - set(PROTOCOLS))
    if bad_protocol:
        raise ResultsError(f"unknown protocol(s) {bad_protocol}; expected zeroshot or fewshot")
    bad_train = sorted(t for t in set(df["train"]) if not is_train_label(t))
    if bad_train:
        raise ResultsError(f"unknown train value(s) {bad_train}; expected all or n<N> (N classes "
                           "drawn from each split's train set)")
    for col in ("value", "distance"):
        bad = ~pd.Series(df[col].map(math.isfinite), index=df.index)
        if bad.any():
            row = df[bad].iloc[0]
            raise ResultsError(f"{_where(row)}: {col} is {row[col]}; a table with NaN or "
                               "infinite values cannot be summarised: rerun that evaluation")
    dup = df.duplicated(list(RUN_KEY), keep=False)
    if dup.any():
        row = df[dup].iloc[0]
        srcs = ", ".join(sorted(set(df[dup]["source"])))
        raise ResultsError(f"duplicate results for {row['method']} {row['protocol']} split "
                           f"{row['split_id']} seed {row['seed']} {row['metric']} (in {srcs}); "
                           "pass each results table once")
    dist = df.groupby("split_id")["distance"].agg(lambda s: s.max() - s.min())
    if (dist > 1e-9 * (1 + df["distance"].abs().max())).any():
        sid = int(dist.idxmax())
        raise ResultsError(f"split {sid} has different distances in different rows; "
                           "the tables do not describe the same ladder")
    return df.drop(columns="source").reset_index(drop=True)


def load_results(paths: Sequence[str | os.PathLike], *,
                 splitfile_sha256: str | None = None) -> pd.DataFrame:
    """Read, concatenate and validate results tables for one report."""
    if not paths:
        raise ResultsError("no results tables given; pass one or more results.parquet/.csv files")
    frames = [read_results(p) for p in paths]
    return validate(pd.concat(frames, ignore_index=True), splitfile_sha256=splitfile_sha256)


def available_metrics(df: pd.DataFrame) -> list[str]:
    """Metrics present in the table, in the canonical order (unknown names last, sorted)."""
    return sorted(set(df["metric"]), key=metric_rank)


def select_metrics(df: pd.DataFrame, metrics: Sequence[str] | None) -> list[str]:
    """The metrics to report: all available by default; requested ones must all exist."""
    avail = available_metrics(df)
    if not metrics:
        return avail
    missing = [m for m in metrics if m not in avail]
    if missing:
        raise ResultsError(f"metric(s) {', '.join(missing)} not in the results; "
                           f"available: {', '.join(avail)}")
    return list(dict.fromkeys(metrics))
