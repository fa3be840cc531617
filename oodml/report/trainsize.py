"""How much of a metric's drop along the ladder is training size, not shift.

On a ladder that removes train classes to reach its hard end, the drop of a metric from the
easiest to the hardest split, D_full = m_all(easiest) - m_all(hardest), mixes the shift with
training on fewer classes. The train-size-controlled rows (``train="n<N>"``: every split
trained on N drawn classes) give D_ctrl = m_N(easiest) - m_N(hardest), the drop at a fixed
training size. The share of the drop that the training size explains is

    share = (D_full - D_ctrl) / D_full,

(where N is the hardest split's whole train set, m_N(hardest) = m_all(hardest) and the share
is the gap m_all(easiest) - m_N(easiest) over D_full). Each m is a mean over seeds (and draws).

Interval: a paired percentile bootstrap. A replicate resamples the seeds with replacement
(the same seeds for the full-train and the controlled rows, which share them) and, at every
split independently, the controlled draws with replacement (draws at different splits are
independent); it recomputes both drops and the share from the resampled means.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from oodml.report.tables import label_series, split_axis
from oodml.results import TRAIN_ALL

TRAIN_SIZE_COLUMNS = (
    "method", "metric", "train", "easiest_split", "hardest_split", "n_seeds", "n_draws",
    "full_easiest", "full_hardest", "full_drop", "controlled_easiest", "controlled_hardest",
    "controlled_drop", "share", "share_lo", "share_hi",
)
BOOTSTRAP = 2000
LEVEL = 0.95


def collapse_draws(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, metric): controlled rows averaged over their draws (``train_seed``),
    so every series has one value per split and seed, as the curves and tables expect."""
    if "train" not in df.columns or (df["train"] == TRAIN_ALL).all():
        return df
    keys = [c for c in df.columns if c not in ("value", "std", "wall_time_s", "train_seed",
                                               "epochs", "n_episodes", "device", "source")]
    ctrl = df[df["train"] != TRAIN_ALL]
    agg = {c: "first" for c in ("std", "wall_time_s", "epochs", "n_episodes", "device")
           if c in df.columns}
    mean = ctrl.groupby(keys, sort=False, dropna=False).agg(value=("value", "mean"),
                                                             train_seed=("train_seed", "size"),
                                                             **{c: (c, f) for c, f in agg.items()})
    mean = mean.reset_index().assign(train_seed=-1)
    return pd.concat([df[df["train"] == TRAIN_ALL], mean[list(df.columns)]],
                     ignore_index=True)


def _cube(sub: pd.DataFrame, splits: list[int], seeds: list[int]) -> list[np.ndarray]:
    """Per split, a (seed x draw) matrix of values."""
    out = []
    for sid in splits:
        at = sub[sub["split_id"] == sid].pivot_table(index="seed", columns="train_seed",
                                                      values="value", aggfunc="mean")
        out.append(at.loc[seeds].to_numpy())
    return out


def train_size_table(df: pd.DataFrame, metrics: list[str], *, seed: int = 0,
                     n_boot: int = BOOTSTRAP) -> pd.DataFrame:
    """Per zero-shot method, controlled training size and metric: both drops and the share of
    the full-train drop that the training size explains, with its bootstrap interval. Only
    methods with full-train and controlled rows on the easiest and hardest split and the same
    seeds take part. ``df`` is a validated table (one row per draw)."""
    zs = df[(df["protocol"] == "zeroshot") & df["metric"].isin(metrics)]
    rows = []
    if zs.empty or "train" not in zs.columns:
        return pd.DataFrame(columns=list(TRAIN_SIZE_COLUMNS))
    axis = split_axis(zs)
    easy, hard = int(axis["split_id"].iloc[0]), int(axis["split_id"].iloc[-1])
    rng = np.random.default_rng(seed)
    for method, group in label_series(zs).groupby("base", sort=True):
        full_rows = group[group["train"] == TRAIN_ALL]
        for train in sorted(set(group["train"]) - {TRAIN_ALL}, key=lambda t: int(t[1:])):
            ctrl_rows = group[group["train"] == train]
            for metric in metrics:
                f = full_rows[full_rows["metric"] == metric]
                c = ctrl_rows[ctrl_rows["metric"] == metric]
                ends = [easy, hard]
                seeds = sorted(set.intersection(*(set(t.loc[t["split_id"] == s, "seed"])
                                                  for t in (f, c) for s in ends)))
                if not seeds:
                    continue
                f_cube = _cube(f, ends, seeds)
                c_cube = _cube(c, ends, seeds)
                if any(np.isnan(m).any() for m in f_cube + c_cube):
                    continue
                row = _share_row(f_cube, c_cube, rng, n_boot)
                rows.append({"method": method, "metric": metric, "train": train,
                             "easiest_split": easy, "hardest_split": hard,
                             "n_seeds": len(seeds), "n_draws": max(m.shape[1] for m in c_cube),
                             **row})
    return pd.DataFrame(rows, columns=list(TRAIN_SIZE_COLUMNS))


def _share(fe: float, fh: float, ce: float, ch: float) -> tuple[float, float, float]:
    full, ctrl = fe - fh, ce - ch
    return full, ctrl, (full - ctrl) / full if full != 0 else float("nan")


def _share_row(f_cube: list[np.ndarray], c_cube: list[np.ndarray], rng: np.random.Generator,
               n_boot: int) -> dict[str, float]:
    fe, fh = (float(m.mean()) for m in f_cube)
    ce, ch = (float(m.mean()) for m in c_cube)
    full, ctrl, share = _share(fe, fh, ce, ch)
    n_seeds = f_cube[0].shape[0]
    reps = np.empty(n_boot)
    for b in range(n_boot):
        s = rng.integers(0, n_seeds, n_seeds)
        fb = [float(m[s].mean()) for m in f_cube]
        cb = []
        for m in c_cube:
            d = rng.integers(0, m.shape[1], m.shape[1])
            cb.append(float(m[np.ix_(s, d)].mean()))
        reps[b] = _share(fb[0], fb[1], cb[0], cb[1])[2]
    reps = reps[np.isfinite(reps)]
    tail = (1 - LEVEL) / 2
    lo, hi = (np.quantile(reps, [tail, 1 - tail]) if len(reps) else (np.nan, np.nan))
    return {"full_easiest": fe, "full_hardest": fh, "full_drop": full,
            "controlled_easiest": ce, "controlled_hardest": ch, "controlled_drop": ctrl,
            "share": share, "share_lo": float(lo), "share_hi": float(hi)}


def share_sentences(table: pd.DataFrame) -> list[str]:
    """One line per row: what share of the drop the training size explains."""
    out = []
    for r in table.itertuples(index=False):
        out.append(
            f"{r.method} {r.metric}: training size explains {100 * r.share:.0f}% "
            f"(95% bootstrap interval {100 * r.share_lo:.0f}% to {100 * r.share_hi:.0f}%, "
            f"{r.n_seeds} seeds x {r.n_draws} draws) of the {r.full_drop:.3f} drop from split "
            f"{r.easiest_split} to {r.hardest_split}; trained on {r.train[1:]} classes at every "
            f"split the drop is {r.controlled_drop:.3f}, the shift's part"
        )
    return out
