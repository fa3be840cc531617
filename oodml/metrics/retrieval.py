"""Per-query retrieval scores from a ranked hit matrix, vectorised in numpy.

Every function takes ``hits`` (bool, queries x K, column j says whether the j-th nearest
neighbour shares the query's class) and ``n_rel`` (int per query: how many same-class
items the gallery holds, the query itself excluded), and returns one float64 per query;
``map_at_k_oodml`` also takes the class size counting the query (the study's normalisation).
Queries with ``n_rel == 0`` are dropped by the caller, as in pytorch-metric-learning.
"""

from __future__ import annotations

import numpy as np


def recall_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """1.0 when at least one of the k nearest neighbours is of the query's class."""
    return hits[:, :k].any(axis=1).astype(np.float64)


def _within(n_rows: int, width: int, limit: np.ndarray) -> np.ndarray:
    """Mask of columns j < limit[row]."""
    return np.arange(width)[None, :] < np.asarray(limit)[:, None]


def r_precision(hits: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """Fraction of same-class items among the first R neighbours, R = n_rel."""
    mask = _within(len(hits), hits.shape[1], n_rel)
    return (hits & mask).sum(axis=1) / n_rel


def average_precision_at(hits: np.ndarray, cutoff: np.ndarray, denom: np.ndarray) -> np.ndarray:
    """Sum of precision@(j+1) over relevant ranks j < cutoff, divided by ``denom``."""
    rel = hits & _within(len(hits), hits.shape[1], cutoff)
    prec = np.cumsum(rel, axis=1, dtype=np.float64) / np.arange(1, hits.shape[1] + 1)
    return (prec * rel).sum(axis=1) / denom


def map_at_r(hits: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """mAP@R (Musgrave et al. 2020): AP over the first R neighbours, divided by R."""
    return average_precision_at(hits, n_rel, n_rel)


def map_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """Standard mAP@K: sum_{j<=K, rank j relevant} precision@j / min(R, K).

    The divisor is the most relevant items the first K ranks can hold, so a perfect ranking
    scores 1.0 whatever the class size. For R <= K this equals pytorch-metric-learning's
    ``mean_average_precision`` with ``k=K`` (which divides by R even when R > K).
    """
    cut = min(k, hits.shape[1])
    return average_precision_at(hits[:, :cut], np.full(len(hits), cut), np.minimum(n_rel, k))


def map_at_k_oodml(
    hits: np.ndarray, n_rel: np.ndarray, k: int, class_size: np.ndarray
) -> np.ndarray:
    """mAP@K exactly as the ooDML study computes its mAP@1000 (``map@1000-oodml``).

    sum_{j<=K, rank j relevant} precision@j / class_size, where ``class_size`` counts the
    gallery items of the query's class including the query itself when it sits in the gallery
    (the study divides by the class frequency of the whole test set and does not cap it at K).
    So in the usual protocol a perfect ranking scores (n_c - 1) / n_c, and a class larger than
    K + 1 cannot reach 1; values are comparable with the study's published mAP@1000.
    """
    k = min(k, hits.shape[1])
    return average_precision_at(hits[:, :k], np.full(len(hits), k), class_size)
