"""Summary and rank tables over a validated results table (pure pandas/numpy, no I/O).

Spread is always over seeds: the sample standard deviation (ddof=1) of the per-seed
statistic. Each statistic (value at the easiest/hardest split, relative drop, AUC) is
computed per seed first, then averaged, so the reported std is the std of that statistic.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.stats as sps

from oodml.errors import ResultsError

SUMMARY_COLUMNS = (
    "series", "method", "protocol", "shots", "metric", "n_seeds", "n_splits",
    "easiest_split", "easiest_value", "easiest_std",
    "hardest_split", "hardest_value", "hardest_std",
    "rel_drop", "rel_drop_std", "auc", "auc_std", "notes",
)


def size_controlled_variant(present: set[str] | list[str], metric: str) -> str | None:
    """The size-controlled name (``<metric>/n<N>``) of ``metric`` among ``present``, the
    smallest N when there are several; None when there is none."""
    prefix = f"{metric}/n"
    ns = sorted(int(m[len(prefix):]) for m in present
                if m.startswith(prefix) and m[len(prefix):].isdigit())
    return f"{prefix}{ns[0]}" if ns else None


def display_metrics(df: pd.DataFrame, metrics: list[str]) -> list[str]:
    """The metrics the figures and the pivot show: each full-test metric is replaced by its
    size-controlled variant when the results have one (splits with different test sizes are
    then compared on the same number of classes); the full values stay in the long table."""
    present = set(df["metric"])
    out = [size_controlled_variant(present, m) or m for m in metrics]
    return list(dict.fromkeys(out))


def with_size_controlled(df: pd.DataFrame, metrics: list[str]) -> list[str]:
    """``metrics`` plus the size-controlled variants present for them, each after its metric."""
    present = set(df["metric"])
    out: list[str] = []
    for m in metrics:
        out.append(m)
        variant = size_controlled_variant(present, m)
        if variant:
            out.append(variant)
    return list(dict.fromkeys(out))


def _config_tag(config: str) -> str:
    return hashlib.sha256(config.encode("utf-8")).hexdigest()[:8]


def _method_config(config: str) -> str:
    """A row's config without its few-shot settings, so a few-shot series pairs with the
    zero-shot run of the same method (a config that is not a JSON object stays as it is)."""
    try:
        doc = json.loads(config)
    except ValueError:
        return config
    if not isinstance(doc, dict):
        return config
    doc.pop("fewshot", None)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def label_series(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``base`` (method, plus a config hash when a method has several configs) and
    ``series`` (base, plus "(k-shot)" for few-shot rows, plus a hash of the few-shot settings
    when one method and shot count was adapted in several ways) columns."""
    method_cfg = [_method_config(c) for c in df["config"]]
    keyed = df.assign(_mcfg=method_cfg)
    n_cfg = keyed.groupby("method")["_mcfg"].nunique()
    multi = set(n_cfg[n_cfg > 1].index)
    base = [f"{m} #{_config_tag(c)}" if m in multi else m
            for m, c in zip(df["method"], method_cfg, strict=True)]
    fs = keyed.assign(base=base)[keyed["protocol"] == "fewshot"]
    n_fs = fs.groupby(["base", "shots"])["config"].nunique()
    multi_fs = set(n_fs[n_fs > 1].index)
    trains = df["train"] if "train" in df.columns else ["all"] * len(df)
    series = [
        b + train_tag(t) if p == "zeroshot"
        else f"{b}{train_tag(t)} ({k}-shot)" + (f" #{_config_tag(c)}" if (b, k) in multi_fs else "")
        for b, p, k, c, t in zip(base, df["protocol"], df["shots"], df["config"], trains,
                                 strict=True)
    ]
    return df.assign(base=base, series=series)


def train_tag(train: str) -> str:
    """What a train-size-controlled series adds to its name (`` [train/n17]``)."""
    return "" if train == "all" else f" [train/{train}]"


def series_order(df: pd.DataFrame) -> list[str]:
    """Series in display order: by base name, zero-shot first, then increasing shots."""
    keys = df[["base", "protocol", "shots", "series"]].drop_duplicates()
    keys = keys.assign(fs=(keys["protocol"] == "fewshot").astype(int), ctrl=train_order(df, keys))
    return list(keys.sort_values(["base", "ctrl", "fs", "shots"])["series"])


def train_order(df: pd.DataFrame, keys: pd.DataFrame) -> list[int]:
    """Sort key of each series' training set: the full train set (0) before N classes (N)."""
    if "train" not in df.columns:
        return [0] * len(keys)
    train = df.groupby("series")["train"].first()
    return [0 if train[s] == "all" else int(train[s][1:]) for s in keys["series"]]


def split_axis(df: pd.DataFrame) -> pd.DataFrame:
    """One row per split present: split_id, distance, sorted easiest (smallest distance) first."""
    s = df.groupby("split_id", as_index=False)["distance"].first()
    return s.sort_values(["distance", "split_id"], kind="mergesort").reset_index(drop=True)


def normalised_distance(distance: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map distances to [0, 1] over the ladder's range [lo, hi]."""
    if not hi > lo:
        raise ValueError("distance range is empty: need two splits with different distances")
    return (np.asarray(distance, dtype=np.float64) - lo) / (hi - lo)


def trapezoid_auc(x: np.ndarray, y: np.ndarray) -> float:
    """Area under y(x) by the trapezoid rule; x must be sorted ascending."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def seed_matrix(df: pd.DataFrame, series: str, metric: str) -> pd.DataFrame:
    """Values of one series and metric as a (split_id x seed) frame, rows easiest first.

    Raises when a seed lacks a split the other seeds have: averaging ragged seeds would
    mix different ladders into one curve.
    """
    sub = df[(df["series"] == series) & (df["metric"] == metric)]
    mat = sub.pivot(index="split_id", columns="seed", values="value")
    if mat.isna().any().any():
        seed = mat.columns[mat.isna().any()][0]
        lacking = [int(s) for s in mat.index[mat[seed].isna()]]
        raise ResultsError(f"{series} {metric}: seed {seed} lacks split(s) {lacking} that other "
                           "seeds have; finish those runs or drop the seed")
    order = split_axis(sub)["split_id"]
    return mat.loc[list(order)]


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(values.std(ddof=1))


def curve(df: pd.DataFrame, series: str, metric: str) -> pd.DataFrame:
    """Mean and seed std per split for one series: columns split_id, distance, mean, std, n."""
    mat = seed_matrix(df, series, metric)
    dist = df.groupby("split_id")["distance"].first()
    stats = [_mean_std(row) for row in mat.to_numpy()]
    return pd.DataFrame({
        "split_id": mat.index.astype("int64"),
        "distance": dist.loc[mat.index].to_numpy(),
        "mean": [m for m, _ in stats],
        "std": [s for _, s in stats],
        "n": mat.shape[1],
    })


def summary_table(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per series and metric: easiest/hardest value, relative drop, normalised AUC, seed stds.

    ``df`` must carry the ``series`` column (see ``label_series``). Distances are normalised
    with the range over all splits in the table, so AUCs of series covering the whole ladder
    are comparable; a series covering fewer splits gets no AUC (NaN, said in ``notes``), since
    an area over part of the range would rank it wrongly.
    """
    axis = split_axis(df)
    lo, hi = float(axis["distance"].iloc[0]), float(axis["distance"].iloc[-1])
    n_total = len(axis)
    rows = []
    for series in series_order(df):
        first = df[df["series"] == series].iloc[0]
        for metric in metrics:
            sub = df[(df["series"] == series) & (df["metric"] == metric)]
            if sub.empty:
                continue
            mat = seed_matrix(df, series, metric)
            vals = mat.to_numpy()
            dist = df.groupby("split_id")["distance"].first().loc[mat.index].to_numpy()
            notes = []
            n_seeds = vals.shape[1]
            if n_seeds == 1:
                notes.append("single seed: no std")
            partial = len(mat) < n_total
            if partial:
                notes.append(f"covers {len(mat)} of {n_total} splits: no AUC")
            easy, hard = vals[0], vals[-1]
            with np.errstate(divide="ignore", invalid="ignore"):
                drop = np.where(easy != 0, (easy - hard) / easy, np.nan)
            if np.isnan(drop).any():
                notes.append("easiest value is 0: no relative drop")
            if hi > lo and len(mat) > 1 and not partial:
                x = normalised_distance(dist, lo, hi)
                auc = np.array([trapezoid_auc(x, vals[:, j]) for j in range(n_seeds)])
            else:
                auc = np.full(n_seeds, np.nan)
                if not partial:
                    notes.append("one split: no AUC")
            e_m, e_s = _mean_std(easy)
            h_m, h_s = _mean_std(hard)
            d_m, d_s = _mean_std(drop)
            a_m, a_s = _mean_std(auc)
            rows.append({
                "series": series, "method": first["method"], "protocol": first["protocol"],
                "shots": int(first["shots"]), "metric": metric, "n_seeds": n_seeds,
                "n_splits": len(mat),
                "easiest_split": int(mat.index[0]), "easiest_value": e_m, "easiest_std": e_s,
                "hardest_split": int(mat.index[-1]), "hardest_value": h_m, "hardest_std": h_s,
                "rel_drop": d_m, "rel_drop_std": d_s, "auc": a_m, "auc_std": a_s,
                "notes": "; ".join(notes),
            })
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def coverage_notes(df: pd.DataFrame, metrics: list[str]) -> list[str]:
    """What the figures and tables cannot show for lack of results, one line per gap: a series
    without some metric, or with fewer splits than the table holds."""
    all_splits = sorted(int(s) for s in df["split_id"].unique())
    notes = []
    for series in series_order(df):
        sub = df[df["series"] == series]
        missing = [m for m in metrics if m not in set(sub["metric"])]
        if missing:
            notes.append(f"{series}: no {', '.join(missing)} results (absent from those "
                         "panels and summary rows)")
        lacking = {}
        for metric in metrics:
            have = set(int(s) for s in sub.loc[sub["metric"] == metric, "split_id"])
            if have and len(have) < len(all_splits):
                lacking[metric] = [s for s in all_splits if s not in have]
        for gap in sorted({tuple(v) for v in lacking.values()}):
            which = [m for m, v in lacking.items() if tuple(v) == gap]
            notes.append(f"{series}: no results on split(s) {list(gap)} for {', '.join(which)} "
                         "(shorter curve, no AUC)")
    return notes


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b between two score vectors (``scipy.stats.kendalltau``, as
    :mod:`oodml.splits.rescore` uses): NaN when fewer than two items or when either vector is
    constant, without scipy's warning."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError("kendall_tau needs two vectors of the same length")
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(sps.kendalltau(x, y).statistic)


@dataclass(frozen=True)
class RankTable:
    """Ranks of zero-shot series per split (1 = best) and Kendall tau vs the starting split."""

    metric: str
    start_split: int
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def rank_table(df: pd.DataFrame, metric: str, start_split: int | None = None) -> RankTable:
    """Rank zero-shot series at every split by ``metric`` (higher is better, seed means).

    ``start_split`` is the ladder's starting split (``is_start`` in the split file); when it
    is None or has no results, the split with the smallest id is used and a note says so.
    Ties get the average rank; tau is tau-b over the series present at both splits.
    """
    zs = df[(df["protocol"] == "zeroshot") & (df["metric"] == metric)]
    if zs.empty:
        raise ResultsError(f"no zero-shot results for rank metric {metric!r}; "
                           "choose another with --rank-metric")
    notes: list[str] = []
    names = series_order(zs)
    means = pd.DataFrame({s: curve(zs, s, metric).set_index("split_id")["mean"] for s in names})
    axis = split_axis(zs)
    means = means.loc[list(axis["split_id"])]
    present = set(int(s) for s in axis["split_id"])
    if start_split is None:
        start = min(present)
        notes.append(f"no split file: starting split taken as the smallest id ({start})")
    elif start_split not in present:
        start = min(present)
        notes.append(f"starting split {start_split} has no {metric} results; "
                     f"using split {start} instead")
    else:
        start = int(start_split)
    ranks = means.rank(axis=1, ascending=False, method="average")
    taus = []
    ref = means.loc[start]
    for sid in means.index:
        row = means.loc[sid]
        ok = (ref.notna() & row.notna()).to_numpy()
        taus.append(kendall_tau(ref.to_numpy()[ok], row.to_numpy()[ok]))
    if len(names) < 2:
        notes.append("fewer than two methods: Kendall tau undefined")
    for sid in means.index:
        n = int(means.loc[sid].notna().sum())
        if n < len(names):
            notes.append(f"split {sid}: ranks {n} of {len(names)} methods (the others have no "
                         f"{metric} results there); tau over the methods present at both splits")
    table = pd.DataFrame({
        "split_id": means.index.astype("int64"),
        "distance": axis["distance"].to_numpy(),
        "is_start": [int(s) == start for s in means.index],
    })
    for s in names:
        table[f"rank {s}"] = ranks[s].to_numpy()
    table["kendall_tau_vs_start"] = taus
    return RankTable(metric=metric, start_split=start, table=table, notes=notes)


def format_cell(v: object, column: str = "") -> str:
    """A table cell as text: floats with 4 decimals (ranks as short numbers), NaN as an en
    dash, booleans as yes/blank."""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else ""
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return "–"
        return f"{v:g}" if column.startswith("rank ") else f"{v:.4f}"
    return str(v)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table formatted with ``format_cell``."""
    cols = [str(c) for c in table.columns]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    body = [line([format_cell(v, c) for v, c in zip(row, cols, strict=True)])
            for row in table.itertuples(index=False, name=None)]
    return "\n".join([line(cols), line(["---"] * len(cols)), *body]) + "\n"


VALIDITY_COLUMNS = (
    "series", "method", "protocol", "shots", "metric", "size_controlled", "n_seeds", "n_splits",
    "slope_per_100", "slope_lo", "slope_hi", "spearman_rho", "falls_monotonically", "rises_at",
)


def _slope_interval(slopes: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-seed slopes and its Student-t interval over seeds (NaN bounds for 1 seed)."""
    from scipy import stats as sps

    m = float(np.mean(slopes))
    n = len(slopes)
    if n < 2:
        return m, float("nan"), float("nan")
    half = float(sps.t.ppf((1 + level) / 2, n - 1) * np.std(slopes, ddof=1) / np.sqrt(n))
    return m, m - half, m + half


def validity_table(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per series and metric: does the metric track the distance?

    ``slope_per_100``: least-squares slope of the metric against the split distance, times
    100 (change per 100 distance units), fitted per seed and averaged; ``slope_lo``/``hi``:
    its 95% Student-t interval over seeds (NaN with one seed). ``spearman_rho``: Spearman's
    rank correlation between distance and the seed-mean metric over the splits (-1: the
    metric falls at every harder split). ``falls_monotonically``: the seed-mean metric is
    strictly lower at every harder split; ``rises_at`` lists the split pairs where it does not.
    """
    from scipy import stats as sps

    rows = []
    for series in series_order(df):
        first = df[df["series"] == series].iloc[0]
        for metric in metrics:
            if df[(df["series"] == series) & (df["metric"] == metric)].empty:
                continue
            mat = seed_matrix(df, series, metric)
            vals = mat.to_numpy()
            dist = df.groupby("split_id")["distance"].first().loc[mat.index].to_numpy()
            if len(mat) >= 2 and np.ptp(dist) > 0:
                slopes = np.array([np.polyfit(dist, vals[:, j], 1)[0] * 100.0
                                   for j in range(vals.shape[1])])
                slope, lo, hi = _slope_interval(slopes)
            else:
                slope = lo = hi = float("nan")
            mean = vals.mean(axis=1)
            rho = (float(sps.spearmanr(dist, mean).statistic)
                   if len(mean) >= 2 and np.ptp(mean) > 0 else float("nan"))
            ids = [int(i) for i in mat.index]
            rises = [f"{ids[i]}→{ids[i + 1]}" for i in range(len(ids) - 1)
                     if not mean[i + 1] < mean[i]]
            rows.append({
                "series": series, "method": first["method"], "protocol": first["protocol"],
                "shots": int(first["shots"]), "metric": metric,
                "size_controlled": "/n" in metric, "n_seeds": vals.shape[1],
                "n_splits": len(mat), "slope_per_100": slope, "slope_lo": lo, "slope_hi": hi,
                "spearman_rho": rho, "falls_monotonically": not rises,
                "rises_at": ", ".join(rises),
            })
    return pd.DataFrame(rows, columns=list(VALIDITY_COLUMNS))


PIVOT_STATS = (("auc", "AUC"), ("rel_drop", "drop"), ("slope_per_100", "slope/100"))


def pivot_table(summary: pd.DataFrame, validity: pd.DataFrame, metrics: list[str]
                ) -> pd.DataFrame:
    """Series x metrics, three numbers per metric: normalised AUC, relative drop and slope per
    100 distance units (seed means); columns ``series`` then ``<metric> AUC``,
    ``<metric> drop``, ``<metric> slope/100`` for each metric in order."""
    merged = summary.merge(validity[["series", "metric", "slope_per_100"]],
                           on=["series", "metric"], how="left")
    names = list(dict.fromkeys(merged["series"]))
    out = pd.DataFrame({"series": names})
    for metric in metrics:
        sub = merged[merged["metric"] == metric].set_index("series")
        for key, label in PIVOT_STATS:
            out[f"{metric} {label}"] = [float(sub[key].get(s, np.nan)) for s in names]
    return out
