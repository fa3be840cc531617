"""Read and validate results tables (from ``oodml evaluate`` / ``oodml fewshot``) for a report.

A report compares methods on one ladder, so every check here exists to refuse inputs that
would otherwise give a silently wrong plot: mixed split files, duplicated runs, missing
columns or metrics, empty tables.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from oodml.errors import OodmlError
from oodml.train.results import COLUMNS
from oodml.train.results import METRICS as METRIC_ORDER

RUN_KEY = ("method", "config", "protocol", "shots", "split_id", "seed", "metric")
_STR_COLUMNS = ("splitfile_sha256", "dataset", "method", "config", "protocol", "metric", "device")


class ResultsError(OodmlError):
    """A results table that cannot be reported on as given."""


def _resolve(path: Path) -> Path:
    if path.is_dir():
        for name in ("results.parquet", "results.csv"):
            if (path / name).is_file():
                return path / name
        raise ResultsError(f"{path}: no results.parquet or results.csv in this folder")
    if not path.is_file():
        raise ResultsError(f"{path}: results table not found; pass a .parquet/.csv file or folder")
    return path


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read one results table (.parquet or .csv, or a folder holding one) and check its columns."""
    path = _resolve(Path(path))
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        df = pd.read_parquet(path)
    elif suffix == ".csv":
        numeric_na = {c: ["", "nan", "NaN"] for c in COLUMNS if c not in _STR_COLUMNS}
        df = pd.read_csv(path, dtype={c: str for c in _STR_COLUMNS}, keep_default_na=False,
                         na_values=numeric_na)
    else:
        raise ResultsError(f"{path}: unknown results format {suffix!r}; use .parquet or .csv")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: missing columns {', '.join(missing)}; "
                           "is this a results table from `oodml evaluate`?")
    if df.empty:
        raise ResultsError(f"{path}: results table is empty; run `oodml evaluate` first")
    df = df.loc[:, list(COLUMNS)].copy()
    df["source"] = str(path)
    return df


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Coerce column types so CSV and parquet tables compare equal."""
    df = df.copy()
    for col in _STR_COLUMNS:
        df[col] = df[col].astype(str)
    for col in ("split_id", "seed", "shots", "n_episodes", "epochs"):
        df[col] = pd.to_numeric(df[col]).astype("int64")
    for col in ("distance", "value", "std", "wall_time_s"):
        df[col] = pd.to_numeric(df[col]).astype("float64")
    return df


def validate(df: pd.DataFrame, *, splitfile_sha256: str | None = None) -> pd.DataFrame:
    """Check that a (concatenated) table describes one ladder with no duplicated runs."""
    if df.empty:
        raise ResultsError("no result rows to report on; run `oodml evaluate` first")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"results table lacks columns {', '.join(missing)}")
    if "source" not in df.columns:
        df = df.assign(source="<table>")
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
    bad_protocol = sorted(set(df["protocol"]) - {"zeroshot", "fewshot"})
    if bad_protocol:
        raise ResultsError(f"unknown protocol(s) {bad_protocol}; expected zeroshot or fewshot")
    if df["value"].isna().any():
        row = df[df["value"].isna()].iloc[0]
        raise ResultsError(f"{row['source']}: NaN value for {row['method']} split {row['split_id']}"
                           f" seed {row['seed']} {row['metric']}; rerun that evaluation")
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
    present = set(df["metric"])
    known = [m for m in METRIC_ORDER if m in present]
    return known + sorted(present - set(METRIC_ORDER))


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
