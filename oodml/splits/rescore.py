"""Rescoring a ladder: every split's distance recomputed with another feature set or distance
mode, and how well the two orderings of the splits agree.

A ladder is only as trustworthy as its ordering: if another extractor (or the other distance
mode) ranks the splits differently, the difficulty grading depends on the extractor. The
agreement is summarised by Kendall's tau-b and Spearman's rho between the two distance
columns (scipy.stats), and by the adjacent levels whose order swaps.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from scipy import stats as sps

from oodml.errors import ConfigError, DataError
from oodml.fileio import atomic_write_text, read_text
from oodml.splits.splitfile import SplitFile
from oodml.stats.class_stats import ClassStats
from oodml.stats.modes import MODES, distance_within

CSV_COLUMNS = (
    "split_id", "n_train", "n_test", "distance", "rescored_distance", "extractor", "mode",
    "rescored_extractor", "rescored_mode",
)


@dataclass(frozen=True)
class Rescore:
    """Both distance columns of a ladder, easiest split first, and their agreement."""

    split_ids: tuple[int, ...]
    n_train: tuple[int, ...]
    n_test: tuple[int, ...]
    distance: tuple[float, ...]
    rescored: tuple[float, ...]
    extractor: str
    mode: str
    rescored_extractor: str
    rescored_mode: str
    source: str | None = field(default=None, compare=False)
    """The CSV it was read from, for error messages (None when computed here)."""

    @property
    def kendall_tau(self) -> float:
        """Kendall's tau-b between the two columns (NaN with fewer than 2 splits)."""
        return _stat(sps.kendalltau, self.distance, self.rescored)

    @property
    def spearman_rho(self) -> float:
        """Spearman's rank correlation between the two columns."""
        return _stat(sps.spearmanr, self.distance, self.rescored)

    @property
    def swaps(self) -> list[tuple[int, int]]:
        """Adjacent splits (a, b) ordered one way by the stored distance and the other way
        (or tied) by the rescored one."""
        out = []
        for i in range(len(self.split_ids) - 1):
            d = self.distance[i + 1] - self.distance[i]
            r = self.rescored[i + 1] - self.rescored[i]
            if d * r <= 0:
                out.append((self.split_ids[i], self.split_ids[i + 1]))
        return out

    def summary(self) -> str:
        """One line: what was compared, tau, rho and the swapped pairs."""
        swaps = ", ".join(f"{a}-{b}" for a, b in self.swaps) or "none"
        return (
            f"{self.extractor} {self.mode} vs {self.rescored_extractor} {self.rescored_mode}: "
            f"Kendall tau {self.kendall_tau:.3f}, Spearman rho {self.spearman_rho:.3f}, "
            f"adjacent swaps: {swaps}"
        )


def _stat(fn, a: tuple[float, ...], b: tuple[float, ...]) -> float:
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(fn(a, b).statistic)


def rescore(
    splitfile: SplitFile,
    stats: ClassStats,
    *,
    extractor: str,
    mode: str | None = None,
    eps: float | None = None,
) -> Rescore:
    """Recompute every split's distance from ``stats`` (class statistics of the same dataset
    computed with ``extractor``) in ``mode`` (default: the file's mode).

    ``eps`` defaults to the file's ``params["eps"]`` when the mode is the file's, else to the
    mode's default (:func:`oodml.stats.modes.distance_within`).
    """
    m = splitfile.distance_mode if mode is None else mode
    if m not in MODES:
        raise ConfigError(f"unknown distance mode {m!r}; choose one of: {', '.join(MODES)}")
    if eps is None and m == splitfile.distance_mode:
        eps = splitfile.params.get("eps")
    missing = sorted({c for s in splitfile.ladder for c in (*s.train, *s.test)}
                     .difference(stats.classes))
    if missing:
        raise ConfigError(
            f"the features lack {len(missing)} class(es) of the split file, e.g. {missing[0]!r}; "
            "extract features of the dataset the split file was made for"
        )
    rescored = []
    for s in splitfile.ladder:
        if m == "class-means":
            md = stats.means_distance() if eps is None else stats.means_distance(eps)
            rescored.append(md.distance(stats.indices(s.train), stats.indices(s.test)))
        else:
            rescored.append(distance_within(stats, s.train, s.test, mode=m, eps=eps))
    return Rescore(
        split_ids=tuple(s.id for s in splitfile.ladder),
        n_train=tuple(len(s.train) for s in splitfile.ladder),
        n_test=tuple(len(s.test) for s in splitfile.ladder),
        distance=tuple(float(s.distance) for s in splitfile.ladder),
        rescored=tuple(float(d) for d in rescored),
        extractor=splitfile.extractor,
        mode=splitfile.distance_mode,
        rescored_extractor=extractor,
        rescored_mode=m,
    )


def rescore_csv(result: Rescore) -> str:
    """The rescored table as CSV text (one row per split, columns ``CSV_COLUMNS``)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for i, sid in enumerate(result.split_ids):
        w.writerow([
            sid, result.n_train[i], result.n_test[i], repr(result.distance[i]),
            repr(result.rescored[i]), result.extractor, result.mode,
            result.rescored_extractor, result.rescored_mode,
        ])
    return buf.getvalue()


def write_rescore_csv(result: Rescore, path: str | os.PathLike) -> Path:
    """Write the rescored table atomically (nothing half-written on failure)."""
    return atomic_write_text(path, rescore_csv(result), what="rescored table")


def read_rescore_csv(path: str | os.PathLike) -> Rescore:
    """Read a table written by :func:`write_rescore_csv` (for the report)."""
    p = Path(path)
    rows = list(csv.DictReader(read_text(p, "rescored table", error=DataError).splitlines()))
    if not rows or set(CSV_COLUMNS) - set(rows[0]):
        raise DataError(
            f"{p} is not a rescored table (needs columns {', '.join(CSV_COLUMNS)}); "
            "write it with `oodml splits rescore ... --out`"
        )
    try:
        nums = [(int(r["split_id"]), int(r["n_train"]), int(r["n_test"]),
                 float(r["distance"]), float(r["rescored_distance"])) for r in rows]
    except ValueError as exc:
        raise DataError(f"{p}: bad number in the rescored table ({exc})") from None
    if not all(math.isfinite(v) for n in nums for v in n[3:]):
        raise DataError(f"{p}: distances must be finite numbers")
    first = rows[0]
    cols = list(zip(*nums, strict=True))
    return Rescore(
        split_ids=tuple(cols[0]), n_train=tuple(cols[1]), n_test=tuple(cols[2]),
        distance=tuple(cols[3]), rescored=tuple(cols[4]),
        extractor=first["extractor"], mode=first["mode"],
        rescored_extractor=first["rescored_extractor"], rescored_mode=first["rescored_mode"],
        source=str(p),
    )


def rescore_rows(result: Rescore) -> list[dict[str, object]]:
    """One dict per split for display: ids, counts, both distances, both ranks (1 = easiest)
    and whether the split swaps order with the next one."""
    ra, rb = sps.rankdata(result.distance), sps.rankdata(result.rescored)
    swapped = {a for a, _ in result.swaps}
    return [
        {"split_id": sid, "n_train": result.n_train[i], "n_test": result.n_test[i],
         "distance": result.distance[i], "rescored_distance": result.rescored[i],
         "rank": float(ra[i]), "rescored_rank": float(rb[i]),
         "swaps_with_next": sid in swapped}
        for i, sid in enumerate(result.split_ids)
    ]
