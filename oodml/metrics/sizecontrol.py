"""Size-controlled retrieval metrics: every metric on N test classes drawn at random.

Retrieval among fewer classes is easier (fewer confusers per query), so a ladder whose hard
splits have small test sets confounds shift with gallery size. Evaluating each split on N
classes drawn from its test classes (R seeded draws, averaged) compares splits on equal
terms. The values are stored under their own names, ``<metric>/n<N>`` (e.g. ``recall@1/n35``),
beside the full-test values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from oodml.errors import ConfigError
from oodml.metrics import (
    DEFAULT_METRICS,
    METRICS,
    RetrievalMetric,
    evaluate_embeddings,
    evaluate_query_gallery,
)

DEFAULT_DRAWS = 10
_NAME = re.compile(r"^(?P<base>.+)/n(?P<n>[1-9][0-9]*)$")


def size_controlled_name(metric: str, n_classes: int) -> str:
    """Results-table name of ``metric`` computed on ``n_classes`` drawn test classes."""
    return f"{metric}/n{int(n_classes)}"


def parse_metric_name(name: str) -> tuple[str, int | None]:
    """(base metric, N) for ``"<metric>/n<N>"``, (name, None) for a full-test metric."""
    m = _NAME.match(name)
    return (m["base"], int(m["n"])) if m else (name, None)


def retrieval_metrics(metrics: Iterable[str] = DEFAULT_METRICS) -> tuple[str, ...]:
    """The retrieval (kNN) metrics among ``metrics``; clustering metrics such as NMI are left
    out, since they are not gallery-size statistics."""
    return tuple(m for m in metrics if isinstance(METRICS.get(m), RetrievalMetric))


def default_gallery_classes(test_class_counts: Iterable[int]) -> int:
    """Default N: the smallest test-class count over the ladder's splits, so every split can
    be evaluated at the same N."""
    counts = [int(c) for c in test_class_counts]
    if not counts:
        raise ConfigError("no splits given: cannot choose the number of gallery classes")
    return min(counts)


def draw_classes(classes: Sequence, n_classes: int, draws: int, seed: int) -> list[np.ndarray]:
    """``draws`` random subsets of ``n_classes`` of ``classes`` (sorted unique values), each
    without replacement, from a stream seeded by (seed, n_classes); one subset (all classes)
    when N is the number of classes, since every draw would be the same."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(n_classes)]))
    pool = np.asarray(classes)
    if n_classes == len(pool):
        return [np.sort(pool)]
    return [np.sort(rng.choice(pool, n_classes, replace=False)) for _ in range(draws)]


def _check(n_classes: int, draws: int, available: int) -> None:
    if draws < 1:
        raise ConfigError(f"gallery_draws={draws} must be >= 1")
    if n_classes < 2:
        raise ConfigError(f"gallery_classes={n_classes} must be >= 2")
    if n_classes > available:
        raise ConfigError(
            f"gallery_classes={n_classes} exceeds the {available} test classes of this split; "
            "choose at most the smallest test-class count of the ladder"
        )


def _average(values: list[dict[str, float]], metrics: Sequence[str], n: int) -> dict[str, float]:
    return {
        size_controlled_name(m, n): float(np.nanmean([v[m] for v in values])) for m in metrics
    }


def size_controlled_metrics(
    emb: np.ndarray,
    labels: Sequence,
    n_classes: int,
    *,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    metrics: Sequence[str] | None = None,
    by_class: dict | None = None,
    **evaluate_kwargs,
) -> dict[str, float]:
    """Retrieval metrics of one embedded test set averaged over ``draws`` random subsets of
    ``n_classes`` test classes (self protocol: every image of the drawn classes is a query
    against the others). Keys are ``<metric>/n<N>``. ``by_class`` receives, under the same
    keys, each metric's per-class values in each draw (:func:`draw_values`), for the class
    bootstrap of :mod:`oodml.metrics.intervals`.

    ``metrics`` defaults to the retrieval metrics of the default set. Draw d is the same class
    subset for every method and seed of a split (it depends on ``seed`` and N only, so pass the
    split's fixed seed, not the training seed, to compare methods on the same galleries).
    ``evaluate_kwargs`` go to :func:`oodml.metrics.evaluate_embeddings` (distance, device,
    backend, chunk).
    """
    emb, labels = np.asarray(emb), np.asarray(labels)
    mets = retrieval_metrics(DEFAULT_METRICS) if metrics is None else tuple(metrics)
    classes = np.unique(labels)
    _check(n_classes, draws, len(classes))
    values, per_draw = [], []
    subsets = draw_classes(classes, n_classes, draws, seed)
    for subset in subsets:
        rows = np.flatnonzero(np.isin(labels, subset))
        bc: dict | None = {} if by_class is not None else None
        values.append(evaluate_embeddings(emb[rows], labels[rows], metrics=mets, by_class=bc,
                                          **evaluate_kwargs))
        per_draw.append(bc)
    if by_class is not None:
        for m in mets:
            by_class[size_controlled_name(m, n_classes)] = draw_values(classes, per_draw, m)
    return _average(values, mets, n_classes)


def draw_values(classes: Sequence, per_draw: Sequence[dict], metric: str) -> dict:
    """``{"classes", "n", "draws", "v"}`` of one metric: the test classes (as str), each
    class's counted queries, the class indices of each draw, and the R x C per-draw class means
    (0 outside a draw or where no query counts), from the draws' ``by_class`` dicts."""
    names = [str(c) for c in classes]
    pos = {c: i for i, c in enumerate(names)}
    n = [0] * len(names)
    idx, v = [], []
    for bc in per_draw:
        row = [0.0] * len(names)
        members = []
        for c, k, x in zip(bc["classes"], bc["n"], bc[metric], strict=True):
            i = pos[str(c)]
            members.append(i)
            n[i] = int(k)
            row[i] = 0.0 if k == 0 else float(f"{x:.10g}")
        idx.append(sorted(members))
        v.append(row)
    return {"classes": names, "n": n, "draws": idx, "v": v}


def size_controlled_query_gallery(
    q_emb: np.ndarray,
    q_labels: Sequence,
    g_emb: np.ndarray,
    g_labels: Sequence,
    n_classes: int,
    *,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    metrics: Sequence[str] | None = None,
    **evaluate_kwargs,
) -> dict[str, float]:
    """The same for separate query and gallery sets (few-shot episodes): classes are drawn
    from the query classes, and both sets keep only the drawn classes' rows."""
    q_emb, q_labels = np.asarray(q_emb), np.asarray(q_labels)
    g_emb, g_labels = np.asarray(g_emb), np.asarray(g_labels)
    mets = retrieval_metrics(DEFAULT_METRICS) if metrics is None else tuple(metrics)
    classes = np.unique(q_labels)
    _check(n_classes, draws, len(classes))
    values = []
    for subset in draw_classes(classes, n_classes, draws, seed):
        qr, gr = np.isin(q_labels, subset), np.isin(g_labels, subset)
        values.append(evaluate_query_gallery(q_emb[qr], q_labels[qr], g_emb[gr], g_labels[gr],
                                             metrics=mets, **evaluate_kwargs))
    return _average(values, mets, n_classes)
