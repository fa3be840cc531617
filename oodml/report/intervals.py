"""Intervals for what a report compares: each (series, split, metric) value, the drop from one
split to the next, and the gap between two methods on one split.

All come from the per-class values the runs store (``class_values``; see
:mod:`oodml.metrics.intervals` for the bootstrap over test classes combined with the seeds, and
for the pairing: splits of a ``test-fixed`` ladder share their test classes, methods on one
split share classes and seeds; size-controlled metrics store their values per gallery draw).
Series without per-class values (older tables, NMI: see
:data:`oodml.metrics.intervals.NO_INTERVAL`) get no interval and are listed as such
(:func:`interval_methods`). Multiplicity: the K - 1 drops of one series and metric are
Holm-adjusted together, as are the K splits of one pair of methods.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd

from oodml.metrics.intervals import (
    NO_INTERVAL,
    ClassValues,
    class_values,
    difference_interval,
    draw_class_values,
    value_interval,
)
from oodml.metrics.sizecontrol import parse_metric_name
from oodml.report.tables import series_order, split_axis, train_tag

LEVEL = 0.95
INTERVAL_COLUMNS = (
    "series", "metric", "split_id", "distance", "value", "ci_low", "ci_high",
    "drop", "drop_lo", "drop_hi", "drop_p_holm", "drop_significant",
)


def _holm(p: list[float]) -> list[float]:
    order = np.argsort(p, kind="stable")
    out, running, m = [0.0] * len(p), 0.0, len(p)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def cell(df: pd.DataFrame, series: str, metric: str, split_id: int) -> ClassValues | None:
    """The per-class values of one (series, metric, split) over its seeds; None when a row
    lacks them (but see :func:`_every_class_draw`)."""
    sub = df[(df["series"] == series) & (df["metric"] == metric) & (df["split_id"] == split_id)]
    if sub.empty or "class_values" not in sub.columns:
        return None
    if not all(isinstance(t, str) and t for t in sub["class_values"]):
        return _every_class_draw(df, sub, series, metric, split_id)
    runs, docs = {}, {}
    for seed, text in zip(sub["seed"], sub["class_values"], strict=True):
        if not isinstance(text, str) or not text:
            return None
        doc = json.loads(text)
        if "draws" in doc:
            docs[int(seed)] = doc
            continue
        runs[int(seed)] = {c: (int(k), float(v))
                           for c, k, v in zip(doc["classes"], doc["n"], doc["v"], strict=True)}
    if docs and runs:
        return None
    return draw_class_values(docs) if docs else class_values(runs)


def _every_class_draw(
    df: pd.DataFrame, sub: pd.DataFrame, series: str, metric: str, split_id: int
) -> ClassValues | None:
    """A size-controlled ``<m>/n<N>`` cell without class values whose N is the split's whole
    test set: its one gallery draw holds every test class, so it is the full-test evaluation
    and its class values are those of ``m`` (runs made before size-controlled rows stored
    theirs). Used only when the full metric's classes number N and every seed's value equals
    the full metric's; else None."""
    base, n = parse_metric_name(metric)
    if n is None:
        return None
    full = cell(df, series, base, split_id)
    if full is None or len(full.classes) != n:
        return None
    rows = df[(df["series"] == series) & (df["metric"] == base) & (df["split_id"] == split_id)]
    mine = dict(zip(sub["seed"], sub["value"], strict=True))
    theirs = dict(zip(rows["seed"], rows["value"], strict=True))
    if mine.keys() != theirs.keys() or any(mine[k] != theirs[k] for k in mine):
        return None
    return full


def _seed(series: str, metric: str, split_id: int) -> int:
    """A reproducible bootstrap seed per cell (independent of table order)."""
    import zlib

    return zlib.crc32(f"{series}\0{metric}\0{split_id}".encode())


def interval_table(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per series, metric and split: the value with its 95% interval, and the drop from the
    previous (easier) split with its paired interval, Holm-adjusted p over the series' drops
    and whether the drop is significant at 95%. Rows only where per-class values exist."""
    axis = list(split_axis(df)["split_id"])
    rows = []
    for series in series_order(df):
        for metric in metrics:
            cells = [(int(sid), cell(df, series, metric, int(sid))) for sid in axis]
            cells = [(sid, cv) for sid, cv in cells if cv is not None]
            if not cells:
                continue
            dist = df.groupby("split_id")["distance"].first()
            block = []
            for i, (sid, cv) in enumerate(cells):
                iv = value_interval(cv, seed=_seed(series, metric, sid), level=LEVEL)
                row = {"series": series, "metric": metric, "split_id": sid,
                       "distance": float(dist.loc[sid]), "value": iv.estimate,
                       "ci_low": iv.low, "ci_high": iv.high, "drop": np.nan, "drop_lo": np.nan,
                       "drop_hi": np.nan, "drop_p_holm": np.nan, "drop_significant": False}
                if i:
                    prev = cells[i - 1][1]
                    gap = difference_interval(cv, prev, seed=_seed(series, metric, -sid),
                                              level=LEVEL)
                    row.update(drop=gap.estimate, drop_lo=gap.low, drop_hi=gap.high,
                               drop_p_holm=gap.p)
                block.append(row)
            if len(block) > 1:
                adj = _holm([r["drop_p_holm"] for r in block[1:]])
                for r, p in zip(block[1:], adj, strict=True):
                    r["drop_p_holm"] = p
                    r["drop_significant"] = bool(p < 1.0 - LEVEL and r["drop"] > 0)
            rows.extend(block)
    return pd.DataFrame(rows, columns=list(INTERVAL_COLUMNS))


def interval_methods(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per metric: how its interval is obtained ("class bootstrap", per gallery draw
    for size-controlled metrics, or from the full metric's class values where a size-controlled
    cell's one draw is the whole test set), in how many (series, split) cells it has none, or
    "none: <why>" (NMI; rows without per-class values)."""
    rows = []
    cellwise = {"series", "split_id"} <= set(df.columns)
    for metric in metrics:
        sub = df[df["metric"] == metric]
        texts = sub["class_values"] if "class_values" in sub.columns else pd.Series([], dtype=str)
        have = [t for t in texts if isinstance(t, str) and t]
        base, n = parse_metric_name(metric)
        ok = stored = 0
        cells = sub[["series", "split_id"]].drop_duplicates() if cellwise else sub[[]]
        for series, sid in (cells.itertuples(index=False) if cellwise else ()):
            rows_here = sub[(sub["series"] == series) & (sub["split_id"] == sid)]
            ok += cell(df, series, metric, int(sid)) is not None
            stored += all(isinstance(t, str) and t for t in rows_here.get("class_values", []))
        if (ok if cellwise else have):
            how = ("class bootstrap within the fixed gallery draws, with the seeds"
                   if have and '"draws"' in have[0] else "class bootstrap, with the seeds")
            if cellwise and ok > stored:
                how += (f" (N = {n} is every test class: in {ok - stored} of {len(cells)} cells "
                        f"one draw, the class values of {base})")
            if cellwise and ok < len(cells):
                how += f"; none in {len(cells) - ok} of {len(cells)} series x split cells"
            elif not cellwise and len(have) < len(sub):
                how += f" ({len(sub) - len(have)} of {len(sub)} rows hold no per-class values)"
        elif base in NO_INTERVAL:
            how = NO_INTERVAL[base]
        else:
            how = "none: the rows hold no per-class values (runs made before they were stored)"
        rows.append({"metric": metric, "interval": how})
    return pd.DataFrame(rows, columns=["metric", "interval"])


def _ranges(ids: list[int]) -> str:
    """'1-3, 5' from [1, 2, 3, 5] (ids in ladder order)."""
    out, run = [], []
    for i in ids:
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def method_order(df: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, list[str]]:
    """For each pair of zero-shot series, per split: the gap (first minus second) with its
    paired interval and Holm-adjusted p over the ladder's splits; and one sentence per pair
    saying where on the ladder their order is significant at 95%."""
    zs = df[(df["protocol"] == "zeroshot") & (df["metric"] == metric)]
    names = series_order(zs)
    axis = [int(s) for s in split_axis(zs)["split_id"]] if not zs.empty else []
    rows, lines = [], []
    for a, b in itertools.combinations(names, 2):
        pair = []
        for sid in axis:
            ca, cb = cell(zs, a, metric, sid), cell(zs, b, metric, sid)
            if ca is None or cb is None:
                continue
            gap = difference_interval(cb, ca, seed=_seed(f"{a}\0{b}", metric, sid), level=LEVEL)
            pair.append({"first": a, "second": b, "metric": metric, "split_id": sid,
                         "gap": gap.estimate, "gap_lo": gap.low, "gap_hi": gap.high,
                         "p_holm": gap.p})
        if not pair:
            continue
        for r, p in zip(pair, _holm([r["p_holm"] for r in pair]), strict=True):
            r["p_holm"] = p
            r["order"] = ((f"{a} > {b}" if r["gap"] > 0 else f"{b} > {a}")
                          if p < 1.0 - LEVEL else "not distinguishable")
        rows += pair
        parts = []
        for order in dict.fromkeys(r["order"] for r in pair):
            ids = [r["split_id"] for r in pair if r["order"] == order]
            parts.append(f"{order} on split{'s' if len(ids) > 1 else ''} {_ranges(ids)}")
        lines.append(f"{metric}: " + "; ".join(parts))
    cols = ["first", "second", "metric", "split_id", "gap", "gap_lo", "gap_hi", "p_holm", "order"]
    return pd.DataFrame(rows, columns=cols), lines


def fewshot_gain(df: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, list[str]]:
    """For each few-shot series, per split: its gain over the zero-shot series it adapts (same
    base method and training size), paired over the split's test classes and seeds (both are
    evaluated on the same test classes: few-shot queries are each class's images less its
    support images), Holm over the splits; and one sentence per series saying where the gain
    is significant at 95%."""
    rows, lines = [], []
    keys = df.drop_duplicates("series").set_index("series")
    zero = set(keys.index[keys["protocol"] == "zeroshot"])
    sub = df[df["metric"] == metric]
    axis = [int(s) for s in split_axis(sub)["split_id"]] if not sub.empty else []
    for series in series_order(df):
        if keys.loc[series, "protocol"] != "fewshot":
            continue
        tag = train_tag(str(keys.loc[series, "train"])) if "train" in keys.columns else ""
        base = f"{keys.loc[series, 'base']}{tag}"
        if base not in zero:
            continue
        block = []
        for sid in axis:
            cf, cz = cell(sub, series, metric, sid), cell(sub, base, metric, sid)
            if cf is None or cz is None:
                continue
            gap = difference_interval(cz, cf, seed=_seed(f"{series}\0gain", metric, sid),
                                      level=LEVEL)
            block.append({"series": series, "zero_shot": base, "metric": metric,
                          "split_id": sid, "gain": gap.estimate, "gain_lo": gap.low,
                          "gain_hi": gap.high, "p_holm": gap.p})
        if not block:
            continue
        for r, p in zip(block, _holm([r["p_holm"] for r in block]), strict=True):
            r["p_holm"] = p
            r["significant"] = bool(p < 1.0 - LEVEL)
        rows += block
        up = [r["split_id"] for r in block if r["significant"] and r["gain"] > 0]
        down = [r["split_id"] for r in block if r["significant"] and r["gain"] < 0]
        parts = [f"gains on split{'s' if len(up) > 1 else ''} {_ranges(up)}"] if up else []
        parts += [f"loses on split{'s' if len(down) > 1 else ''} {_ranges(down)}"] if down else []
        lines.append(f"{series} vs {base} ({metric}): "
                     + ("; ".join(parts) if parts else "no split differs significantly"))
    cols = ["series", "zero_shot", "metric", "split_id", "gain", "gain_lo", "gain_hi", "p_holm",
            "significant"]
    return pd.DataFrame(rows, columns=cols), lines
