"""Metric definitions: standard mAP@1000 against pytorch-metric-learning, the study's
mAP@1000 under its own name, and NMI's k-means on every point."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import FaissKMeans

from oodml.metrics import DEFAULT_METRICS, evaluate_embeddings, evaluate_query_gallery
from oodml.metrics.clustering import kmeans_assign, nmi


def blobs(sizes: list[int], dim: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centers = rng.standard_normal((len(sizes), dim))
    x = centers[labels] + noise * rng.standard_normal((len(labels), dim))
    return x.astype(np.float32), labels


def pml(x: np.ndarray, labels: np.ndarray, include: tuple[str, ...], k, **kw) -> dict:
    calc = AccuracyCalculator(include=include, k=k, device=torch.device("cpu"), **kw)
    return calc.get_accuracy(torch.from_numpy(x), torch.from_numpy(labels))


def test_both_map_at_1000_variants_are_default_metrics() -> None:
    assert {"map@1000", "map@1000-oodml"} <= set(DEFAULT_METRICS)


@pytest.mark.parametrize(
    ("sizes", "noise"),
    [([2, 5, 9, 40, 17, 3] * 5, 1.2),  # small uneven classes, all hits inside the top 1000
     ([300] * 5, 2.0)],  # 1500 items: many same-class items rank beyond 1000
)
def test_map_at_1000_equals_pml_map_k1000(sizes: list[int], noise: float) -> None:
    x, labels = blobs(sizes, 16, noise, seed=3)
    ours = evaluate_embeddings(x, labels, metrics=["map@1000", "map@1000-oodml"],
                               distance="euclidean")
    # pml pads with label -1 rows when k exceeds the gallery (wrong hits), so give it at most
    # the whole gallery; our depth stops there by itself
    ref = pml(x, labels, ("mean_average_precision",), k=min(1000, len(x) - 1))
    # float32 near-ties may rank differently in the two kNN routes: ~1e-8 differences
    assert ours["map@1000"] == pytest.approx(ref["mean_average_precision"], abs=1e-6)
    assert 0.05 < ours["map@1000"] < 0.95
    # the study's normalisation divides by the class size counting the query: always lower
    assert ours["map@1000-oodml"] < ours["map@1000"]


def test_perfect_embedding_scores_one_standard_and_n_minus_1_over_n_study() -> None:
    x, labels = blobs([50] * 8, 8, 1e-3, seed=0)
    got = evaluate_embeddings(x, labels, metrics=["map@1000", "map@1000-oodml", "map@r"],
                              distance="euclidean")
    assert got["map@1000"] == pytest.approx(1.0, abs=1e-12)
    assert got["map@1000-oodml"] == pytest.approx(49 / 50, abs=1e-12)
    assert got["map@r"] == pytest.approx(1.0, abs=1e-12)


def test_map_at_1000_divides_by_min_r_1000_for_a_class_over_1000() -> None:
    # class 0: 1201 coincident points, so its first 1000 neighbours are all hits (R = 1200):
    # AP = 1000 / min(1200, 1000) = 1. Class 1: 10 points, perfect, AP = 1.
    x = np.concatenate([np.zeros((1201, 2)), np.full((10, 2), 9.0)]).astype(np.float32)
    labels = np.array([0] * 1201 + [1] * 10)
    got = evaluate_embeddings(x, labels, metrics=["map@1000", "map@1000-oodml"],
                              distance="euclidean")
    assert got["map@1000"] == pytest.approx(1.0)
    assert got["map@1000-oodml"] == pytest.approx((1201 * 1000 / 1201 + 10 * 9 / 10) / 1211)


def test_map_at_1000_query_gallery_hand_computed() -> None:
    # gallery A at 0 and 1, B at 10; query A at 0.9: ranks A(1), A(0) -> AP 1;
    # query A at 9: ranks B, A(1), A(0) -> (1/2 + 2/3) / 2; query B at 0.4: ranks A, A, B -> 1/3.
    g = np.array([[0.0], [1.0], [10.0]], dtype=np.float32)
    gl = np.array([0, 0, 1])
    q = np.array([[0.9], [9.0], [0.4]], dtype=np.float32)
    ql = np.array([0, 0, 1])
    got = evaluate_query_gallery(q, ql, g, gl, metrics=["map@1000"], distance="euclidean")
    assert got["map@1000"] == pytest.approx((1 + (1 / 2 + 2 / 3) / 2 + 1 / 3) / 3)


def lloyd_full_data(x: np.ndarray, init: np.ndarray, niter: int) -> np.ndarray:
    """Reference k-means: plain Lloyd iterations on every point, float64, then assignment."""
    x64, c = x.astype(np.float64), init.astype(np.float64)

    def assign(c: np.ndarray) -> np.ndarray:
        return ((x64**2).sum(1)[:, None] - 2 * x64 @ c.T + (c**2).sum(1)[None]).argmin(1)

    for _ in range(niter):
        a = assign(c)
        c = np.stack([x64[a == j].mean(0) for j in range(len(c))]).astype(np.float32)
        c = c.astype(np.float64)
    return assign(c)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_uses_all_points_10_classes_x_500(seed: int) -> None:
    import faiss

    x, labels = blobs([500] * 10, 32, 2.5, seed=seed)
    init = x[np.random.default_rng(seed).choice(len(x), 10, replace=False)]
    ours = kmeans_assign(x, 10, seed=seed, init=init)
    ref = lloyd_full_data(x, init, 20)
    assert (ours == ref).mean() >= 0.999
    # faiss's default trains on 256 points per centroid: a different clustering
    km = faiss.Kmeans(32, 10, niter=20, seed=seed, min_points_per_centroid=1)
    km.train(x, init_centroids=init.copy())
    sub = km.index.search(x, 1)[1].ravel()
    assert (sub == ref).mean() < 0.99


def test_nmi_equals_pml_with_the_subsample_limit_lifted() -> None:
    x, labels = blobs([500] * 10, 32, 2.5, seed=5)
    ours = evaluate_embeddings(x, labels, metrics=["nmi"], distance="euclidean", seed=1234)
    lifted = pml(x, labels, ("NMI",), k=1,
                 kmeans_func=FaissKMeans(niter=20, seed=1234, max_points_per_centroid=10**9))
    assert ours["nmi"] == pytest.approx(lifted["NMI"], abs=1e-12)
    assert ours["nmi"] == pytest.approx(nmi(labels, kmeans_assign(x, 10, seed=1234)))
