"""Retrieval metrics: Recall@k, NMI, mAP@R, R-Precision, mAP@1000 and the study's mAP@1000.

``map@1000`` is the standard mAP@1000 (divisor min(R, 1000), a perfect ranking scores 1);
``map@1000-oodml`` is the ooDML study's normalisation (divisor: the class size counting the
query, so a perfect ranking of a class of n scores (n - 1) / n), kept to compare with it.

One exact kNN search (k = the most any requested metric needs) feeds every retrieval
metric; NMI clusters the query embeddings with faiss k-means (one cluster per class). In the
usual protocol on the CPU, k-means' first assignment (its initial centroids are rows) comes
from the kNN's own score blocks (``knn_and_nearest_rows``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from oodml.errors import ConfigError
from oodml.metrics import retrieval
from oodml.metrics.clustering import bounded_start_rows, kmeans_assign, nmi
from oodml.metrics.knn import (
    CHUNK,
    check_device,
    check_distance,
    knn,
    knn_and_nearest_rows,
    prepare,
)
from oodml.registry import Registry

DEFAULT_METRICS: tuple[str, ...] = (
    "recall@1", "recall@2", "recall@4", "recall@8", "nmi", "map@r", "r_precision", "map@1000",
    "map@1000-oodml",
)


@dataclass(frozen=True)
class RetrievalMetric:
    """A per-query score from the hit matrix ``per_query(hits, n_rel, class_size)``;
    ``depth(max_rel)`` is how many neighbours it needs. ``n_rel`` excludes the query itself,
    ``class_size`` counts it when it sits in the gallery."""

    per_query: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    depth: Callable[[int], int]


@dataclass(frozen=True)
class ClusteringMetric:
    """A score from true labels and k-means cluster assignments."""

    score: Callable[[np.ndarray, np.ndarray], float]


METRICS: Registry[RetrievalMetric | ClusteringMetric] = Registry("metric")


def _recall(k: int) -> RetrievalMetric:
    return RetrievalMetric(lambda h, r, _n: retrieval.recall_at_k(h, r, k), lambda _m: k)


def _map_at(k: int) -> RetrievalMetric:
    return RetrievalMetric(lambda h, r, _n: retrieval.map_at_k(h, r, k), lambda _m: k)


def _map_at_oodml(k: int) -> RetrievalMetric:
    return RetrievalMetric(lambda h, r, n: retrieval.map_at_k_oodml(h, r, k, n), lambda _m: k)


for _k in (1, 2, 4, 8, 16, 32):
    METRICS.add(f"recall@{_k}", _recall(_k))
METRICS.add("map@r", RetrievalMetric(lambda h, r, _n: retrieval.map_at_r(h, r), lambda m: m))
METRICS.add(
    "r_precision", RetrievalMetric(lambda h, r, _n: retrieval.r_precision(h, r), lambda m: m)
)
METRICS.add("map@1000", _map_at(1000))
METRICS.add("map@1000-oodml", _map_at_oodml(1000))
METRICS.add("nmi", ClusteringMetric(nmi))


def _encode(q_labels: np.ndarray, g_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    both = np.concatenate([np.asarray(q_labels).ravel(), np.asarray(g_labels).ravel()])
    codes = np.unique(both, return_inverse=True)[1].ravel().astype(np.int64)
    return codes[: len(q_labels)], codes[len(q_labels) :]


def _check_lengths(emb: np.ndarray, labels: np.ndarray, what: str) -> None:
    if len(emb) != len(labels):
        raise ConfigError(f"{what}: {len(emb)} embeddings but {len(labels)} labels")
    if len(emb) == 0:
        raise ConfigError(f"{what}: no embeddings to evaluate")


def _evaluate(
    q: np.ndarray, ql: np.ndarray, g: np.ndarray | None, gl: np.ndarray,
    exclude: np.ndarray | None, metrics: Sequence[str], distance: str, device: str,
    seed: int, backend: str, chunk: int, by_class: dict | None = None,
) -> dict[str, float]:
    specs = {name: METRICS.get(name) for name in metrics}
    q_names = np.asarray(ql)
    ql, gl = _encode(ql, gl)
    n_rel = class_size = np.bincount(gl, minlength=int(max(ql.max(), gl.max())) + 1)[ql]
    if exclude is not None:
        n_rel = n_rel - ((exclude >= 0) & (gl[np.maximum(exclude, 0)] == ql))
    out: dict[str, float] = {}
    ret = {n: s for n, s in specs.items() if isinstance(s, RetrievalMetric)}
    clusters = [n for n, s in specs.items() if isinstance(s, ClusteringMetric)]
    x = prepare(q, distance) if clusters else None
    n_clusters = len(np.unique(ql))
    start = first = None
    if clusters and ret and g is None and device == "cpu" and backend in ("auto", "torch"):
        start = bounded_start_rows(x, n_clusters, seed=seed, device=device)
        if start is not None and distance == "cosine" and not x[start].any(axis=1).all():
            start = None
    if ret:
        valid = n_rel > 0
        available = len(gl) - (1 if exclude is not None else 0)
        max_rel = int(n_rel.max())
        depth = min(max(s.depth(max_rel) for s in ret.values()), available)
        sums = dict.fromkeys(ret, 0.0)
        n_codes = int(max(ql.max(), gl.max())) + 1
        per_class = {name: np.zeros(n_codes) for name in ret}
        if valid.any() and depth > 0:
            if start is not None:
                _, idx, *first = knn_and_nearest_rows(
                    q, depth, start, distance=distance, chunk=chunk
                )
            else:
                _, idx = knn(
                    q, depth, g, distance=distance, exclude=None if g is None else exclude,
                    backend=backend, device=device, chunk=chunk,
                )
            for s in range(0, len(q), chunk):
                sl = slice(s, s + chunk)
                keep = valid[sl]
                hits = (gl[idx[sl]] == ql[sl, None])[keep]
                rel, size = n_rel[sl][keep], class_size[sl][keep]
                codes = ql[sl][keep]
                for name, spec in ret.items():
                    scores = spec.per_query(hits, rel, size)
                    sums[name] += float(scores.sum())
                    per_class[name] += np.bincount(codes, weights=scores, minlength=n_codes)
        n_valid = int(valid.sum())
        for name in ret:
            out[name] = sums[name] / n_valid if n_valid else float("nan")
        if by_class is not None:
            _fill_by_class(by_class, q_names, ql, valid, per_class)
    for name in clusters:
        assign = kmeans_assign(x, n_clusters, seed=seed, device=device,
                               first=tuple(first) if first else None)
        out[name] = specs[name].score(ql, assign)
    return {name: out[name] for name in metrics}


def _fill_by_class(
    by_class: dict, names: np.ndarray, ql: np.ndarray, valid: np.ndarray,
    per_class: dict[str, np.ndarray],
) -> None:
    """``by_class["classes"]`` (query class names, sorted), ``["n"]`` (queries that count per
    class) and ``[metric]`` (each class's mean per-query score, NaN without a counted query):
    what :mod:`oodml.metrics.intervals` resamples."""
    codes, first = np.unique(ql, return_index=True)
    counts = np.bincount(ql[valid], minlength=int(ql.max()) + 1)
    by_class["classes"] = [str(names[i]) for i in first]
    by_class["n"] = [int(counts[c]) for c in codes]
    for name, sums in per_class.items():
        by_class[name] = [float(sums[c] / counts[c]) if counts[c] else float("nan")
                          for c in codes]


def evaluate_query_gallery(
    q_emb: np.ndarray,
    q_labels: np.ndarray,
    g_emb: np.ndarray,
    g_labels: np.ndarray,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    distance: str = "cosine",
    device: str = "cpu",
    seed: int = 0,
    exclude: np.ndarray | None = None,
    backend: str = "auto",
    chunk: int = CHUNK,
    by_class: dict | None = None,
) -> dict[str, float]:
    """Metrics for separate query and gallery sets (few-shot episodes).

    ``exclude[i]`` is a gallery index never returned for query i (-1: none), for when a
    query also sits in the gallery. R counts gallery items of the query's class (minus the
    excluded one); queries with R = 0 are left out of retrieval metrics (NaN if all are).
    NMI clusters the queries into as many clusters as they have classes.
    """
    _check_lengths(q_emb, q_labels, "query")
    _check_lengths(g_emb, g_labels, "gallery")
    check_distance(distance)
    check_device(device)
    ex = None if exclude is None else np.asarray(exclude, dtype=np.int64)
    if ex is not None and (ex < 0).all():
        ex = None
    return _evaluate(
        np.asarray(q_emb), np.asarray(q_labels), np.asarray(g_emb), np.asarray(g_labels),
        ex, metrics, distance, device, seed, backend, chunk, by_class,
    )


def evaluate_embeddings(
    emb: np.ndarray,
    labels: np.ndarray,
    *,
    query_idx: np.ndarray | None = None,
    gallery_idx: np.ndarray | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    distance: str = "cosine",
    device: str = "cpu",
    seed: int = 0,
    backend: str = "auto",
    chunk: int = CHUNK,
    by_class: dict | None = None,
) -> dict[str, float]:
    """Metrics for one embedded test set, keyed by the results-table metric names.

    ``by_class``: a dict to receive each retrieval metric's per-class means and the per-class
    query counts (see ``_fill_by_class``), for class-bootstrap intervals.

    Default: the usual DML protocol, every item is a query against all the others (its own
    row is excluded by index, so duplicates still count). ``query_idx`` / ``gallery_idx``
    pick rows for each role (default: all rows); a row in both is never its own neighbour.
    """
    emb, labels = np.asarray(emb), np.asarray(labels)
    _check_lengths(emb, labels, "embeddings")
    check_distance(distance)
    check_device(device)
    if query_idx is None and gallery_idx is None:
        return _evaluate(
            emb, labels, None, labels, np.arange(len(emb)), metrics, distance, device, seed,
            backend, chunk, by_class,
        )
    qi = np.arange(len(emb)) if query_idx is None else np.asarray(query_idx, dtype=np.int64)
    gi = np.arange(len(emb)) if gallery_idx is None else np.asarray(gallery_idx, dtype=np.int64)
    pos = np.full(len(emb), -1, dtype=np.int64)
    pos[gi] = np.arange(len(gi))
    return evaluate_query_gallery(
        emb[qi], labels[qi], emb[gi], labels[gi], metrics=metrics, distance=distance,
        device=device, seed=seed, exclude=pos[qi], backend=backend, chunk=chunk,
        by_class=by_class,
    )


__all__ = [
    "DEFAULT_METRICS", "METRICS", "RetrievalMetric", "ClusteringMetric", "evaluate_embeddings",
    "evaluate_query_gallery", "knn", "nmi", "kmeans_assign",
]
