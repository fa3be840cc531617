"""Does a ladder's order survive a change of measure (and of extractor)?

:func:`measure_agreement` recomputes every split of a split file under every measure x
extractor column (:mod:`oodml.stats.measures`), then gives Kendall's tau-b between every pair of
columns, each with a bootstrap interval, and a one-line verdict.

Bootstrap (as the distance intervals of :mod:`oodml.splits.uncertainty`): the classes are the
sample. Replicate b draws, for every split, ``n_train`` of its train classes and ``n_test`` of
its test classes with replacement (a class drawn twice counts twice) and recomputes every column
on those same draws (paired: all columns see the same classes); tau between two columns is then
recomputed over the splits. The interval is the 2.5-97.5 percentile interval of the replicate
taus (replicates where a column is constant, whose tau is undefined, are left out and counted).

Verdict: the ladder orders its splits easiest first; a column *swaps* adjacent splits k, k+1
when its value does not increase from k to k+1. The order agrees when no column swaps any pair.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats as sps

from oodml.errors import ConfigError, DataError
from oodml.fileio import atomic_write_text, read_text
from oodml.splits.splitfile import SplitFile
from oodml.stats.class_stats import ClassStats
from oodml.stats.measures import get_measure
from oodml.stats.modes import MODES

DEFAULT_AGREEMENT_BOOTSTRAPS = 100
LEVEL = 0.95
VALUE_COLUMNS = ("split_id", "n_train", "n_test", "distance", "extractor", "mode", "measure",
                 "value", "spread", "solver")
TAU_COLUMNS = ("a", "b", "tau", "lo", "hi", "n_boot", "n_defined")


@dataclass(frozen=True)
class Column:
    """One measure x extractor recomputation of every split, ladder order."""

    extractor: str
    mode: str
    measure: str
    values: tuple[float, ...]
    spreads: tuple[float | None, ...]
    solvers: tuple[str | None, ...]

    @property
    def label(self) -> str:
        return f"{self.measure}/{self.extractor}"

    def swaps(self, split_ids: Sequence[int]) -> list[tuple[int, int]]:
        """Adjacent splits whose order this column does not keep (value not increasing)."""
        return [(split_ids[i], split_ids[i + 1]) for i in range(len(self.values) - 1)
                if not self.values[i + 1] > self.values[i]]


@dataclass(frozen=True)
class Tau:
    """Kendall's tau-b between columns ``a`` and ``b`` with its bootstrap interval."""

    a: str
    b: str
    tau: float
    lo: float
    hi: float
    n_boot: int
    n_defined: int


@dataclass(frozen=True)
class MeasureAgreement:
    """Every split under every column, the pairwise taus and the verdict."""

    split_ids: tuple[int, ...]
    n_train: tuple[int, ...]
    n_test: tuple[int, ...]
    distance: tuple[float, ...]
    columns: tuple[Column, ...]
    taus: tuple[Tau, ...]
    source: str | None = field(default=None, compare=False)

    def tau_matrix(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """(labels, tau, lo, hi) as square matrices (diagonal 1)."""
        labels = [c.label for c in self.columns]
        pos = {lab: i for i, lab in enumerate(labels)}
        k = len(labels)
        tau, lo, hi = np.eye(k), np.eye(k), np.eye(k)
        for t in self.taus:
            i, j = pos[t.a], pos[t.b]
            tau[i, j] = tau[j, i] = t.tau
            lo[i, j] = lo[j, i] = t.lo
            hi[i, j] = hi[j, i] = t.hi
        return labels, tau, lo, hi

    def verdict(self) -> str:
        """One line: agreement under all columns, or which column swaps which splits."""
        n = len(self.columns)
        worst = min(self.taus, key=lambda t: (t.tau, t.lo), default=None)
        tail = (f"min tau {worst.tau:.2f} [{worst.lo:.2f}, {worst.hi:.2f}], {worst.a} vs "
                f"{worst.b}" if worst else "one column, no pairs")
        bad = [(c.label, c.swaps(self.split_ids)) for c in self.columns]
        bad = [(lab, s) for lab, s in bad if s]
        if not bad:
            return f"order agrees under all {n} measure x extractor columns ({tail})"
        parts = "; ".join(f"{lab} swaps {', '.join(f'{a}-{b}' for a, b in s)}" for lab, s in bad)
        return f"order differs: {parts} ({tail})"


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(sps.kendalltau(a, b).statistic)


def measure_agreement(
    splitfile: SplitFile,
    stats: Mapping[str, ClassStats],
    measures: Sequence[str],
    *,
    mode: str | None = None,
    n_boot: int = DEFAULT_AGREEMENT_BOOTSTRAPS,
    seed: int = 0,
    tick: Callable[[], None] | None = None,
) -> MeasureAgreement:
    """Recompute every split of ``splitfile`` under each of ``measures`` on each feature set
    of ``stats`` (extractor name -> class statistics of the file's dataset), in ``mode``
    (default: the file's), with ``n_boot`` paired class-bootstrap replicates for the taus.

    ``tick`` is called once per (split, replicate) and once per split for the point values.
    """
    m = splitfile.distance_mode if mode is None else mode
    if m not in MODES:
        raise ConfigError(f"unknown distance mode {m!r}; choose one of: {', '.join(MODES)}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ConfigError(f"bootstrap={n_boot!r} must be an integer >= 0")
    eps = splitfile.params.get("eps") if m == splitfile.distance_mode else None
    objs = [get_measure(name) for name in measures]
    for obj in objs:
        obj.check_mode(m)
    needed = {c for s in splitfile.ladder for c in (*s.train, *s.test)}
    for ext, st in stats.items():
        missing = sorted(needed.difference(st.classes))
        if missing:
            raise ConfigError(
                f"the {ext} features lack {len(missing)} class(es) of the split file, e.g. "
                f"{missing[0]!r}; extract features of the dataset the split file was made for"
            )
    idx = {ext: [(st.indices(s.train), st.indices(s.test)) for s in splitfile.ladder]
           for ext, st in stats.items()}
    columns = []
    for ext, st in stats.items():
        for obj in objs:
            vals = []
            for tr, te in idx[ext]:
                vals.append(obj(st, tr, te, m, eps))
                if tick:
                    tick()
            columns.append(Column(ext, m, obj.name, tuple(v.value for v in vals),
                                  tuple(v.spread for v in vals), tuple(v.solver for v in vals)))
    reps = np.full((len(columns), n_boot, len(splitfile.ladder)), np.nan)
    for k, s in enumerate(splitfile.ladder):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(s.id)]))
        da = rng.integers(0, len(s.train), size=(n_boot, len(s.train)))
        db = rng.integers(0, len(s.test), size=(n_boot, len(s.test)))
        for b in range(n_boot):
            c = 0
            for ext, st in stats.items():
                tr, te = idx[ext][k]
                for obj in objs:
                    reps[c, b, k] = obj(st, tr[da[b]], te[db[b]], m, eps).value
                    c += 1
            if tick:
                tick()
    taus = []
    for i in range(len(columns)):
        for j in range(i + 1, len(columns)):
            point = _kendall(np.array(columns[i].values), np.array(columns[j].values))
            boot = np.array([_kendall(reps[i, b], reps[j, b]) for b in range(n_boot)])
            ok = boot[np.isfinite(boot)]
            if len(ok):
                lo, hi = np.percentile(ok, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
            else:
                lo = hi = float("nan")
            taus.append(Tau(columns[i].label, columns[j].label, point, float(lo), float(hi),
                            n_boot, int(len(ok))))
    return MeasureAgreement(
        split_ids=tuple(s.id for s in splitfile.ladder),
        n_train=tuple(len(s.train) for s in splitfile.ladder),
        n_test=tuple(len(s.test) for s in splitfile.ladder),
        distance=tuple(float(s.distance) for s in splitfile.ladder),
        columns=tuple(columns),
        taus=tuple(taus),
    )


def _num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def agreement_csvs(result: MeasureAgreement) -> tuple[str, str]:
    """(values CSV, taus CSV): one row per (split, column); one row per column pair."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(VALUE_COLUMNS)
    for c in result.columns:
        for i, sid in enumerate(result.split_ids):
            w.writerow([sid, result.n_train[i], result.n_test[i], repr(result.distance[i]),
                        c.extractor, c.mode, c.measure, repr(c.values[i]), _num(c.spreads[i]),
                        c.solvers[i] or ""])
    tbuf = io.StringIO()
    w = csv.writer(tbuf, lineterminator="\n")
    w.writerow(TAU_COLUMNS)
    for t in result.taus:
        w.writerow([t.a, t.b, repr(t.tau), repr(t.lo), repr(t.hi), t.n_boot, t.n_defined])
    return buf.getvalue(), tbuf.getvalue()


def tau_path(path: str | os.PathLike) -> Path:
    """Where the tau table of the values table ``path`` lives (``X.csv`` -> ``X.tau.csv``)."""
    p = Path(path)
    return p.with_name(p.stem + ".tau" + (p.suffix or ".csv"))


def write_agreement(result: MeasureAgreement, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write the values table to ``path`` and the taus beside it (each atomically)."""
    values, taus = agreement_csvs(result)
    return atomic_write_text(path, values), atomic_write_text(tau_path(path), taus)


MAX_TABLE_BYTES = 64 * 2**20


def _rows(p: Path, columns: Sequence[str], what: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(read_text(p, what, MAX_TABLE_BYTES, error=DataError)
                               .splitlines()))
    if not rows or set(columns) - set(rows[0]):
        raise DataError(f"{p} is not a {what} (needs columns {', '.join(columns)}); write it "
                        "with `oodml splits rescore ... --measure ... --out`")
    return rows


def is_agreement_csv(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts with the values header of a measure-agreement table."""
    try:
        with Path(path).open("rb") as f:
            head = f.readline(4096).decode("utf-8", "replace").strip()
    except OSError:
        return False
    return head == ",".join(VALUE_COLUMNS)


def read_agreement(path: str | os.PathLike) -> MeasureAgreement:
    """Read what :func:`write_agreement` wrote (values table and its ``.tau.csv``)."""
    p = Path(path)
    rows = _rows(p, VALUE_COLUMNS, "measure-agreement table")
    try:
        order: dict[tuple[str, str, str], list[dict[str, str]]] = {}
        for r in rows:
            order.setdefault((r["extractor"], r["mode"], r["measure"]), []).append(r)
        first = next(iter(order.values()))
        ids = tuple(int(r["split_id"]) for r in first)
        columns = []
        for (ext, mode, meas), rs in order.items():
            if tuple(int(r["split_id"]) for r in rs) != ids:
                raise DataError(f"{p}: column {meas}/{ext} lists other splits than {ids}")
            vals = tuple(float(r["value"]) for r in rs)
            spreads = tuple(float(r["spread"]) if r["spread"] else None for r in rs)
            if not all(math.isfinite(v) for v in vals):
                raise DataError(f"{p}: values must be finite numbers")
            columns.append(Column(ext, mode, meas, vals, spreads,
                                  tuple(r["solver"] or None for r in rs)))
        trows = _rows(tau_path(p), TAU_COLUMNS, "tau table")
        taus = tuple(Tau(r["a"], r["b"], float(r["tau"]), float(r["lo"]), float(r["hi"]),
                         int(r["n_boot"]), int(r["n_defined"])) for r in trows)
        labels = {c.label for c in columns}
        if any(t.a not in labels or t.b not in labels for t in taus):
            raise DataError(f"{tau_path(p)} names columns that {p} does not have")
        return MeasureAgreement(
            split_ids=ids, n_train=tuple(int(r["n_train"]) for r in first),
            n_test=tuple(int(r["n_test"]) for r in first),
            distance=tuple(float(r["distance"]) for r in first),
            columns=tuple(columns), taus=taus, source=str(p))
    except ValueError as exc:
        raise DataError(f"{p}: bad number in the measure-agreement table ({exc})") from None


def value_rows(result: MeasureAgreement) -> list[dict[str, object]]:
    """One dict per split: id, counts, stored distance and each column's value (± spread)."""
    out = []
    for i, sid in enumerate(result.split_ids):
        row: dict[str, object] = {"split_id": sid, "n_train": result.n_train[i],
                                  "n_test": result.n_test[i], "distance": result.distance[i]}
        for c in result.columns:
            row[c.label] = c.values[i]
        out.append(row)
    return out


def solver_notes(result: MeasureAgreement) -> list[str]:
    """Which solver produced each OT column's values (one line per column that has one)."""
    out = []
    for c in result.columns:
        used = sorted({s for s in c.solvers if s})
        if used:
            out.append(f"{c.label}: {', '.join(used)}")
    return out
