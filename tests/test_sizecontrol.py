"""Size-controlled retrieval metrics: constant shift with a shrinking test set, names, draws."""

from __future__ import annotations

import numpy as np
import pytest

from oodml.errors import ConfigError
from oodml.metrics import DEFAULT_METRICS, evaluate_embeddings, evaluate_query_gallery
from oodml.metrics.sizecontrol import (
    default_gallery_classes,
    draw_classes,
    parse_metric_name,
    retrieval_metrics,
    size_controlled_metrics,
    size_controlled_name,
    size_controlled_query_gallery,
)


def make_test_set(n_classes: int, seed: int, per_class: int = 20, dim: int = 64,
             noise: float = 1.4) -> tuple[np.ndarray, np.ndarray]:
    """One test set from a fixed generator: the same shift (difficulty per class) whatever
    the number of classes."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim))
    labels = np.repeat(np.arange(n_classes), per_class)
    x = centres[labels] + noise * rng.standard_normal((len(labels), dim))
    return x.astype(np.float32), labels


def test_constant_shift_shrinking_test_set_flat_size_controlled_rising_full() -> None:
    sizes = (80, 40, 20)
    full = {n: [] for n in sizes}
    controlled = {n: [] for n in sizes}
    for rep in range(5):
        for n in sizes:
            x, labels = make_test_set(n, 1000 * rep + n)
            full[n].append(evaluate_embeddings(x, labels, metrics=["recall@1"],
                                               distance="euclidean")["recall@1"])
            got = size_controlled_metrics(x, labels, 20, draws=10, seed=0,
                                          metrics=["recall@1"], distance="euclidean")
            controlled[n].append(got["recall@1/n20"])
    f = [float(np.mean(full[n])) for n in sizes]
    c = [float(np.mean(controlled[n])) for n in sizes]
    assert f[0] < f[1] < f[2]  # fewer classes, fewer confusers: full Recall@1 rises
    rise = f[2] - f[0]
    assert rise > 0.07
    assert max(c) - min(c) < 0.35 * rise  # the size-controlled value stays flat


def test_values_are_the_mean_over_the_drawn_class_subsets() -> None:
    x, labels = make_test_set(12, 3, per_class=6, dim=8, noise=1.0)
    mets = ["recall@1", "map@r", "map@1000"]
    got = size_controlled_metrics(x, labels, 5, draws=4, seed=11, metrics=mets,
                                  distance="euclidean")
    subsets = draw_classes(np.unique(labels), 5, 4, 11)
    assert len({tuple(s) for s in subsets}) == 4
    ref = [evaluate_embeddings(x[np.isin(labels, s)], labels[np.isin(labels, s)], metrics=mets,
                               distance="euclidean") for s in subsets]
    assert got == pytest.approx({f"{m}/n5": np.mean([r[m] for r in ref]) for m in mets})
    assert got == size_controlled_metrics(x, labels, 5, draws=4, seed=11, metrics=mets,
                                          distance="euclidean")
    assert got != size_controlled_metrics(x, labels, 5, draws=4, seed=12, metrics=mets,
                                          distance="euclidean")
    # N = all classes: one evaluation, equal to the full-test values
    whole = size_controlled_metrics(x, labels, 12, metrics=mets, distance="euclidean")
    full = evaluate_embeddings(x, labels, metrics=mets, distance="euclidean")
    assert whole == pytest.approx({f"{m}/n12": v for m, v in full.items()})


def test_default_metrics_are_the_retrieval_ones() -> None:
    x, labels = make_test_set(6, 0, per_class=4, dim=4)
    got = size_controlled_metrics(x, labels, 3, draws=2)
    assert set(got) == {size_controlled_name(m, 3) for m in DEFAULT_METRICS if m != "nmi"}
    assert "nmi" not in retrieval_metrics()


def test_query_gallery_variant_filters_both_sets() -> None:
    x, labels = make_test_set(10, 5, per_class=6, dim=8, noise=1.0)
    q = np.arange(len(x)) % 3 == 0
    got = size_controlled_query_gallery(x[q], labels[q], x[~q], labels[~q], 4, draws=3, seed=2,
                                        metrics=["recall@1", "map@r"], distance="euclidean")
    ref = []
    for s in draw_classes(np.unique(labels[q]), 4, 3, 2):
        qi, gi = q & np.isin(labels, s), ~q & np.isin(labels, s)
        ref.append(evaluate_query_gallery(x[qi], labels[qi], x[gi], labels[gi],
                                          metrics=["recall@1", "map@r"], distance="euclidean"))
    assert got == pytest.approx({f"{m}/n4": np.mean([r[m] for r in ref])
                                 for m in ("recall@1", "map@r")})


def test_names_defaults_and_bad_input() -> None:
    assert size_controlled_name("recall@1", 50) == "recall@1/n50"
    assert parse_metric_name("recall@1/n50") == ("recall@1", 50)
    assert parse_metric_name("map@1000-oodml/n7") == ("map@1000-oodml", 7)
    assert parse_metric_name("recall@1") == ("recall@1", None)
    assert default_gallery_classes([68, 66, 55, 35]) == 35
    x, labels = make_test_set(5, 0, per_class=3, dim=4)
    with pytest.raises(ConfigError, match="gallery_classes=6 exceeds the 5 test classes"):
        size_controlled_metrics(x, labels, 6)
    with pytest.raises(ConfigError, match="gallery_draws=0 must be >= 1"):
        size_controlled_metrics(x, labels, 3, draws=0)
    with pytest.raises(ConfigError, match="no splits"):
        default_gallery_classes([])
