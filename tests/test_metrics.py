"""Retrieval metrics: hand-computed cases, self-match exclusion, and pytorch-metric-learning."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from sklearn.metrics import normalized_mutual_info_score

from oodml.errors import ConfigError
from oodml.metrics import (
    DEFAULT_METRICS,
    METRICS,
    evaluate_embeddings,
    evaluate_query_gallery,
    kmeans_assign,
    knn,
    nmi,
)

# Six points on a line: class A at 0, 1, 5 and class B at 2.4, 6, 7.5 (no tied distances).
# Ranked hits per query (same class = 1), R = 2 for every query:
#   0: [1,0,1,0,0]  1: [1,0,1,0,0]  5: [0,0,0,1,1]
#   2.4: [0,0,0,1,1]  6: [0,1,1,0,0]  7.5: [1,0,1,0,0]
LINE = np.array([0.0, 1.0, 5.0, 2.4, 6.0, 7.5])
LINE_LABELS = np.array(["A", "A", "A", "B", "B", "B"])
LINE_EXPECTED = {
    "recall@1": 3 / 6,
    "recall@2": 4 / 6,
    "recall@4": 1.0,
    "recall@8": 1.0,
    "r_precision": (0.5 + 0.5 + 0 + 0 + 0.5 + 0.5) / 6,
    "map@r": (1 / 2 + 1 / 2 + 0 + 0 + (1 / 2) / 2 + 1 / 2) / 6,
    # K = 5 neighbours; as in the ooDML study, AP divided by the class size counting the
    # query itself (3), so a perfect ranking would score 2/3.
    "map@1000-oodml": (3 * (1 + 2 / 3) / 3 + 2 * (1 / 4 + 2 / 5) / 3 + (1 / 2 + 2 / 3) / 3) / 6,
}
RETRIEVAL = ("recall@1", "recall@2", "recall@4", "recall@8", "r_precision", "map@r",
             "map@1000-oodml")


def clustered(n_classes: int, dim: int, seed: int, noise: float = 1.5) -> tuple[np.ndarray, ...]:
    """Gaussian blobs with uneven class sizes (2 to 9 per class)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 10, n_classes)
    labels = np.repeat(np.arange(n_classes), sizes)
    centers = rng.standard_normal((n_classes, dim)).astype(np.float32)
    x = centers[labels] + noise * rng.standard_normal((len(labels), dim)).astype(np.float32)
    return x, labels


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_hand_computed_line_euclidean(backend: str) -> None:
    emb = np.stack([LINE, np.zeros(6)], axis=1)
    got = evaluate_embeddings(emb, LINE_LABELS, metrics=RETRIEVAL, distance="euclidean",
                              backend=backend)
    assert got == pytest.approx(LINE_EXPECTED, abs=1e-12)


def test_hand_computed_cosine_uses_angles_and_ignores_length() -> None:
    angles = np.deg2rad(LINE * 10)
    scale = np.array([1.0, 3.0, 0.2, 7.0, 1.5, 0.9])
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1) * scale[:, None]
    got = evaluate_embeddings(emb, LINE_LABELS, metrics=RETRIEVAL, distance="cosine")
    assert got == pytest.approx(LINE_EXPECTED, abs=1e-12)
    euclid = evaluate_embeddings(emb, LINE_LABELS, metrics=["recall@1"], distance="euclidean")
    assert euclid["recall@1"] != LINE_EXPECTED["recall@1"]


def test_nmi_hand_computed_and_limits() -> None:
    t, p = [0, 0, 1, 1], [0, 0, 0, 1]
    mi = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    h_t = math.log(2)
    h_p = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert nmi(t, p) == pytest.approx(mi / ((h_t + h_p) / 2), rel=1e-12)
    assert nmi(["a", "a", "b", "b"], [5, 5, 2, 2]) == pytest.approx(1.0, rel=1e-12)
    assert nmi([0, 0, 1, 1], [0, 1, 0, 1]) == 0.0
    assert nmi([3, 3, 3], [1, 1, 1]) == 1.0
    assert nmi([0, 0, 0, 0], [0, 1, 2, 3]) == 0.0


def test_nmi_matches_sklearn_on_random_assignments() -> None:
    rng = np.random.default_rng(3)
    for n_true, n_pred in [(5, 5), (40, 17), (2, 60)]:
        t, p = rng.integers(0, n_true, 500), rng.integers(0, n_pred, 500)
        p[:250] = t[:250]
        assert nmi(t, p) == pytest.approx(normalized_mutual_info_score(t, p), rel=1e-10)


def test_kmeans_is_seeded_and_finds_separated_clusters() -> None:
    x, labels = clustered(12, 16, seed=5, noise=0.05)
    a = kmeans_assign(x, 12, seed=7)
    assert np.array_equal(a, kmeans_assign(x, 12, seed=7))
    got = evaluate_embeddings(x, labels, metrics=["nmi", "recall@1"], distance="euclidean", seed=7)
    assert got == {"nmi": nmi(labels, a), "recall@1": 1.0}
    # One k-means run (as in pytorch-metric-learning) may merge blobs, but never most of them.
    assert got["nmi"] > 0.7


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_self_match_excluded_by_index_with_duplicates(backend: str) -> None:
    x = np.zeros((10, 4), dtype=np.float32)
    for k in (3, 9):
        _, idx = knn(x, k, distance="euclidean", backend=backend, chunk=4)
        for i, row in enumerate(idx):
            assert i not in row and len(set(row.tolist())) == k
    # Rows 0 and 1 coincide but differ in class: 1 must be 0's first neighbour and vice versa.
    emb = np.array([[0, 0], [0, 0], [3, 0], [3.2, 0], [9, 0]], dtype=np.float32)
    labels = np.array([0, 1, 0, 0, 1])
    _, idx = knn(emb, 1, distance="euclidean", backend=backend)
    assert idx[:2, 0].tolist() == [1, 0]
    got = evaluate_embeddings(emb, labels, metrics=["recall@1"], distance="euclidean",
                              backend=backend)
    assert got["recall@1"] == pytest.approx(2 / 5)  # rows 2 and 3 find each other


def test_query_gallery_protocol_hand_computed() -> None:
    gallery = np.array([[0.0], [10.0]])
    g_labels = np.array(["A", "B"])
    queries = np.array([[6.0], [9.0], [3.0]])
    q_labels = np.array(["A", "B", "C"])  # C has no gallery item: left out of retrieval
    got = evaluate_query_gallery(queries, q_labels, gallery, g_labels, distance="euclidean",
                                 metrics=("recall@1", "recall@2", "r_precision", "map@r",
                                          "map@1000-oodml"))
    assert got == pytest.approx({"recall@1": 0.5, "recall@2": 1.0, "r_precision": 0.5,
                                 "map@r": 0.5, "map@1000-oodml": (0.5 + 1.0) / 2})


def test_index_split_equals_query_gallery_call_and_self_protocol() -> None:
    x, labels = clustered(20, 8, seed=2)
    both = evaluate_embeddings(x, labels, query_idx=np.arange(len(x)),
                               gallery_idx=np.arange(len(x)), distance="euclidean", seed=4)
    assert both == pytest.approx(evaluate_embeddings(x, labels, distance="euclidean", seed=4))
    qi, gi = np.arange(0, len(x), 2), np.arange(1, len(x), 2)
    split = evaluate_embeddings(x, labels, query_idx=qi, gallery_idx=gi, seed=4)
    direct = evaluate_query_gallery(x[qi], labels[qi], x[gi], labels[gi], seed=4)
    assert split == pytest.approx(direct)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_torch_and_faiss_backends_agree(distance: str) -> None:
    x, labels = clustered(30, 24, seed=11)
    a_s, a_i = knn(x, 12, distance=distance, backend="torch", chunk=37)
    b_s, b_i = knn(x, 12, distance=distance, backend="faiss", chunk=50)
    np.testing.assert_allclose(a_s, b_s, atol=1e-4)
    assert (a_i == b_i).mean() > 0.99
    g = x[::3] + 0.1
    a_s, _ = knn(x, 5, g, distance=distance, backend="torch", chunk=16)
    b_s, _ = knn(x, 5, g, distance=distance, backend="faiss", chunk=16)
    np.testing.assert_allclose(a_s, b_s, atol=1e-4)


def pml_accuracy(q, ql, g=None, gl=None, k=None) -> dict[str, float]:
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r", "NMI",
                 "mean_average_precision"),
        k=k, device=torch.device("cpu"),
    )
    if g is None:
        return calc.get_accuracy(q, ql)
    return calc.get_accuracy(q, ql, g, gl, ref_includes_query=False)


def assert_matches_pml(ours: dict[str, float], ref: dict[str, float]) -> None:
    assert ours["recall@1"] == pytest.approx(ref["precision_at_1"], abs=1e-12)
    assert ours["r_precision"] == pytest.approx(ref["r_precision"], abs=1e-12)
    assert ours["map@r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-12)


def study_map_at_1000(x: np.ndarray, labels: np.ndarray) -> float:
    """The ooDML study's mAP@1000, written from its definition: rank all other items by
    Euclidean distance, keep the first 1000, sum precision@j at every same-class rank j and
    divide by the query's class frequency in the whole set (the query counted)."""
    x = np.asarray(x, dtype=np.float64)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    _, freq = np.unique(labels, return_counts=True)
    size = dict(zip(np.unique(labels), freq, strict=True))
    aps = []
    for i in range(len(x)):
        order = [j for j in np.argsort(d[i], kind="stable") if j != i][:1000]
        hit = labels[order] == labels[i]
        prec = np.cumsum(hit) / np.arange(1, len(order) + 1)
        aps.append((prec * hit).sum() / size[labels[i]])
    return float(np.mean(aps))


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_agrees_with_pytorch_metric_learning_self_protocol(backend: str) -> None:
    x, labels = clustered(60, 32, seed=1)
    ours = evaluate_embeddings(x, labels, distance="euclidean", seed=1234, backend=backend)
    ref = pml_accuracy(x, labels)
    assert_matches_pml(ours, ref)
    assert ours["nmi"] == pytest.approx(ref["NMI"], abs=1e-9)  # same faiss k-means, same seed
    assert 0.1 < ours["recall@1"] < 0.9
    assert ours["map@1000-oodml"] == pytest.approx(study_map_at_1000(x, labels), abs=1e-12)


def test_agrees_with_pytorch_metric_learning_query_gallery_cosine() -> None:
    x, labels = clustered(40, 16, seed=8)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    is_q = rng.random(len(x)) < 0.4
    ours = evaluate_query_gallery(x[is_q], labels[is_q], x[~is_q], labels[~is_q],
                                  distance="cosine")
    ref = pml_accuracy(x[is_q], labels[is_q], x[~is_q], labels[~is_q])
    assert_matches_pml(ours, ref)


def _omniglot_pixel_embeddings(omniglot_zip: Path) -> tuple[np.ndarray, np.ndarray]:
    """30 real Omniglot classes as 16 x 16 pixels under a fixed random projection to 64-d (it
    breaks the exact distance ties of near-binary pixels, whose order among equals is
    arbitrary in any kNN implementation), with their labels."""
    from oodml.data import load_dataset

    manifest = load_dataset("omniglot", omniglot_zip)
    rows = manifest.indices_of(manifest.classes[:30])
    pixels = np.stack([
        np.asarray(manifest.load_image(int(i)).convert("L").resize((16, 16)), dtype=np.float32)
        for i in rows
    ]).reshape(len(rows), -1) / 255.0
    proj = np.random.default_rng(0).standard_normal((pixels.shape[1], 64)).astype(np.float32)
    return pixels @ proj, np.asarray(manifest.labels)[rows]


def test_agrees_with_pytorch_metric_learning_on_omniglot_pixels(omniglot_zip: Path) -> None:
    emb, labels = _omniglot_pixel_embeddings(omniglot_zip)
    ours = evaluate_embeddings(emb, labels, distance="euclidean", seed=1234)
    codes = np.unique(labels, return_inverse=True)[1]
    ref = pml_accuracy(emb, codes)
    assert_matches_pml(ours, ref)
    assert ours["nmi"] == pytest.approx(ref["NMI"], abs=1e-9)
    assert ours["map@1000-oodml"] == pytest.approx(study_map_at_1000(emb, labels), abs=1e-9)


def test_map_at_1000_cuts_at_1000_neighbours() -> None:
    # One class of 1201 identical points and 10 far away. Class 0: the first 1000 neighbours
    # are all hits (sum of precisions 1000), divided by its frequency 1201; class 1: 9 hits
    # of 9, divided by 10. mAP@R is 1 for both.
    x = np.concatenate([np.zeros((1201, 2)), np.full((10, 2), 9.0)]).astype(np.float32)
    labels = np.array([0] * 1201 + [1] * 10)
    got = evaluate_embeddings(x, labels, metrics=["map@1000-oodml", "map@r"],
                              distance="euclidean")
    assert got["map@1000-oodml"] == pytest.approx((1201 * 1000 / 1201 + 10 * 9 / 10) / 1211)
    assert got["map@r"] == pytest.approx(1.0)
    # separate query and gallery sets: the query is not in the gallery, so a perfect ranking
    # of a class smaller than 1000 scores 1
    q, g = np.zeros((3, 2), np.float32), np.concatenate([np.zeros((5, 2)), np.ones((4, 2))])
    got = evaluate_query_gallery(q, np.zeros(3), g.astype(np.float32), np.array([0] * 5 + [1] * 4),
                                 metrics=["map@1000-oodml"], distance="euclidean")
    assert got["map@1000-oodml"] == pytest.approx(1.0)


def test_default_names_registered_and_bad_input_is_clear() -> None:
    assert set(DEFAULT_METRICS) <= set(METRICS.names())
    x, labels = clustered(5, 4, seed=0)
    with pytest.raises(ConfigError, match="unknown metric 'recall@3'"):
        evaluate_embeddings(x, labels, metrics=["recall@3"])
    with pytest.raises(ConfigError, match="unknown distance"):
        evaluate_embeddings(x, labels, distance="manhattan")
    with pytest.raises(ConfigError, match="labels"):
        evaluate_embeddings(x, labels[:-1])
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            evaluate_embeddings(x, labels, device="cuda")


def test_byte_identical_results_for_same_inputs() -> None:
    x, labels = clustered(25, 8, seed=9)
    a = evaluate_embeddings(x, labels, seed=3)
    b = evaluate_embeddings(x.copy(), labels.copy(), seed=3)
    assert repr(a) == repr(b)


@pytest.mark.parametrize(
    ("n_classes", "n", "noise", "k", "dim"),
    [(60, 300, 1.5, 60, 32), (10, 3000, 2.5, 10, 16), (300, 2000, 3.0, 400, 8)],
)
def test_bounded_kmeans_equals_faiss_kmeans(n_classes, n, noise, k, dim) -> None:
    rng = np.random.default_rng(n)
    labels = rng.integers(0, n_classes, n)
    centers = rng.standard_normal((n_classes, dim)).astype(np.float32)
    x = centers[labels] + noise * rng.standard_normal((n, dim)).astype(np.float32)
    ours = kmeans_assign(x, k, seed=1234, engine="bounded")
    ref = kmeans_assign(x, k, seed=1234, engine="faiss")
    assert np.array_equal(ours, ref)
    got = evaluate_embeddings(x, labels, metrics=["nmi"], distance="euclidean", seed=1234)
    ref = kmeans_assign(x, len(np.unique(labels)), seed=1234, engine="faiss")
    assert got == {"nmi": nmi(labels, ref)}


def test_bounded_kmeans_replicates_faiss_empty_cluster_splits() -> None:
    import faiss

    # 60 tight groups of 8 and 90 centroids: some start empty and faiss splits another.
    rng = np.random.default_rng(0)
    base = rng.standard_normal((60, 8)).astype(np.float32)
    x = np.repeat(base, 8, axis=0) + 0.01 * rng.standard_normal((480, 8)).astype(np.float32)
    km = faiss.Kmeans(8, 90, niter=20, seed=1234, min_points_per_centroid=1,
                      max_points_per_centroid=10**9)
    km.train(x)
    assert sum(st["nsplit"] for st in km.iteration_stats) > 0
    ours = kmeans_assign(x, 90, seed=1234, engine="bounded")
    assert np.array_equal(ours, km.index.search(x, 1)[1].ravel())


def test_kmeans_engine_is_checked() -> None:
    with pytest.raises(ConfigError, match="k-means engine"):
        kmeans_assign(np.zeros((4, 2), dtype=np.float32), 2, engine="sklearn")


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_pruned_self_knn_equals_plain_blocks_and_faiss(distance: str) -> None:
    from oodml.metrics.knn import _knn_torch_self, prepare

    rng = np.random.default_rng(4)
    x = rng.standard_normal((600, 12)).astype(np.float32)
    x[::9] = x[1::9][: len(x[::9])]  # exact duplicates: tied scores across blocks
    p = prepare(x, distance)
    if distance == "euclidean":
        p = p - p.mean(0)
    pruned = _knn_torch_self(p, 9, distance, "cpu", 64, prune=True)
    plain = _knn_torch_self(p, 9, distance, "cpu", 64, prune=False)
    np.testing.assert_array_equal(pruned[0], plain[0])
    assert (pruned[1] == plain[1]).mean() > 0.99
    s, i = knn(x, 9, distance=distance, chunk=64)  # auto: the pruned torch route
    fs, fi = knn(x, 9, distance=distance, backend="faiss", chunk=64)
    np.testing.assert_allclose(s, fs, atol=1e-4)
    assert (i == fi).mean() > 0.98


def test_pruned_self_knn_on_exact_ties() -> None:
    x = np.random.default_rng(5).standard_normal((300, 6)).astype(np.float32)
    x[200:] = 0.0  # 100 identical rows: a block where everything ties takes exact top-k
    s, i = knn(x, 5, distance="euclidean", chunk=32)
    assert (s[200:] == 0).all() and (i[200:] >= 200).all()
    y = x[:240].copy()
    y[185:206] = 0.0  # 21 ties across two blocks: few enough to merge by index
    _, iy = knn(y, 5, distance="euclidean", chunk=64)
    assert iy[200].tolist() == [185, 186, 187, 188, 189]
    for row, nb in enumerate(i):
        assert row not in nb and len(set(nb.tolist())) == 5


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_score_blocks_are_symmetric_to_the_last_bit(distance: str) -> None:
    """Between blocks of one shape a pair's score does not depend on which side its rows are
    on, and identical rows tie exactly."""
    import importlib

    import torch

    knn_module = importlib.import_module("oodml.metrics.knn")
    x = np.random.default_rng(11).standard_normal((200, 37)).astype(np.float32) * 3 + 1
    scores = knn_module._Scores(torch.from_numpy(x), distance, 64)
    for a, b in ((0, 64), (64, 128), (0, 128)):
        assert torch.equal(scores.block(a, b).clone(), scores.block(b, a).T)
    x[150] = x[10]
    full = knn_module._Scores(torch.from_numpy(x), distance, 200).block(0, 0)
    assert torch.equal(full[:, 10], full[:, 150])


def test_neighbour_keys_order_as_score_then_lower_index() -> None:
    """The int64 keys the pruned merge selects on sort exactly as (score descending, gallery
    index ascending), with -0.0 tying 0.0 as the float compare does, and decode losslessly."""
    import importlib

    knn_module = importlib.import_module("oodml.metrics.knn")
    rng = np.random.default_rng(7)
    scores = np.concatenate([
        rng.standard_normal(300).astype(np.float32) * 10,
        np.array([0.0, -0.0, -np.inf, np.float32(1e-45), -np.float32(1e-45), 3.5, 3.5],
                 dtype=np.float32),
    ])
    ids = rng.permutation(2 * len(scores))[: len(scores)].astype(np.int64)
    keys = knn_module._keys(scores, ids)
    by_key = np.argsort(-keys, kind="stable")
    by_pair = np.lexsort((ids, -scores.astype(np.float64)))
    np.testing.assert_array_equal(by_key, by_pair)
    np.testing.assert_array_equal(knn_module._key_scores(keys), scores + np.float32(0))
    np.testing.assert_array_equal(knn_module._key_ids(keys), ids)


def test_row_wise_and_global_candidate_merges_agree(monkeypatch) -> None:
    """Both merges of pruned candidates (padded rows; one global sort for wide rows) give
    the same neighbours, ties by index included."""
    import importlib

    knn_module = importlib.import_module("oodml.metrics.knn")  # the package exports knn()
    x = np.random.default_rng(6).standard_normal((500, 8)).astype(np.float32)
    x[:497:7] = x[3::7]
    rowwise = knn(x, 6, distance="euclidean", chunk=64)
    monkeypatch.setattr(knn_module, "MERGE_MAX_WIDTH", 6)
    calls = []
    real = knn_module._merge_keys_global
    monkeypatch.setattr(knn_module, "_merge_keys_global",
                        lambda *a: calls.append(1) or real(*a))
    merged_globally = knn(x, 6, distance="euclidean", chunk=64)
    assert calls
    np.testing.assert_array_equal(rowwise[0], merged_globally[0])
    np.testing.assert_array_equal(rowwise[1], merged_globally[1])


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_knn_and_nearest_rows_equal_knn_and_brute_force(distance: str) -> None:
    """The kNN half equals ``knn``; the nearest of the given rows (each row of the set its own
    nearest) and the squared distance to the second nearest equal a float64 brute force."""
    import importlib

    knn_module = importlib.import_module("oodml.metrics.knn")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((700, 10)).astype(np.float32)
    x[::11] = x[5::11][: len(x[::11])]  # duplicates
    rows = rng.permutation(len(x))[:90]
    s, i, nearest, second = knn_module.knn_and_nearest_rows(x, 7, rows, distance=distance,
                                                            chunk=64)
    s0, i0 = knn(x, 7, distance=distance, chunk=64)
    np.testing.assert_allclose(s, s0, atol=1e-5)
    assert (i == i0).mean() > 0.99
    p = knn_module.prepare(x, distance).astype(np.float64)
    d = ((p[:, None, :] - p[rows][None, :, :]) ** 2).sum(-1)
    best = d.min(1)
    assert np.allclose(d[np.arange(len(x)), nearest], best, atol=1e-5)
    assert (best[rows] == 0).all() and np.allclose(d[rows, nearest[rows]], 0)
    np.testing.assert_allclose(second, np.sort(d, 1)[:, 1], atol=1e-4)
    with pytest.raises(ConfigError, match="distinct"):
        knn_module.knn_and_nearest_rows(x, 7, np.array([3, 3]), distance=distance)
    if distance == "cosine":
        x[rows[0]] = 0.0  # its cosine score ties every row, whatever the distance
        with pytest.raises(ConfigError, match="zero embedding"):
            knn_module.knn_and_nearest_rows(x, 7, rows, distance=distance)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_metrics_with_and_without_the_kmeans_hand_over_agree(distance: str, monkeypatch) -> None:
    """Every metric is the same whether k-means takes its first step from the kNN or not,
    zero embeddings included (for cosine they switch the hand-over off)."""
    import importlib

    clustering = importlib.import_module("oodml.metrics.clustering")
    metrics_pkg = importlib.import_module("oodml.metrics")
    monkeypatch.setattr(clustering, "BOUNDED_MIN_WORK", 0)
    rng = np.random.default_rng(10)
    labels = np.repeat(np.arange(60), 9)
    x = rng.standard_normal((60, 12)).astype(np.float32)[labels]
    x += 0.8 * rng.standard_normal(x.shape).astype(np.float32)
    x[::37] = 0.0
    shared = evaluate_embeddings(x, labels, distance=distance, seed=3, chunk=128)
    monkeypatch.setattr(metrics_pkg, "bounded_start_rows", lambda *a, **kw: None)
    plain = evaluate_embeddings(x, labels, distance=distance, seed=3, chunk=128)
    assert shared == pytest.approx(plain, abs=1e-12)
    assert 0.3 < shared["nmi"] < 1.0


def test_kmeans_first_assignment_from_knn_changes_nothing() -> None:
    """Handing k-means its first assignment from the kNN blocks gives the same clustering as
    computing it, and a malformed one is refused."""
    import importlib

    knn_module = importlib.import_module("oodml.metrics.knn")
    from oodml.metrics.clustering import _faiss_init, bounded_start_rows

    rng = np.random.default_rng(9)
    centres = rng.standard_normal((40, 16)).astype(np.float32)
    x = np.repeat(centres, 15, axis=0) + 0.7 * rng.standard_normal((600, 16)).astype(np.float32)
    rows = bounded_start_rows(x, 40, seed=1234, engine="bounded")
    np.testing.assert_array_equal(x[rows], _faiss_init(x, 40, 1234))
    assert bounded_start_rows(x, 40, seed=1234) is None  # too small: auto runs faiss itself
    _, _, nearest, second = knn_module.knn_and_nearest_rows(x, 5, rows, distance="euclidean")
    plain = kmeans_assign(x, 40, seed=1234, engine="bounded")
    shared = kmeans_assign(x, 40, seed=1234, engine="bounded", first=(nearest, second))
    np.testing.assert_array_equal(plain, shared)
    with pytest.raises(ConfigError, match="first assignment"):
        kmeans_assign(x, 40, seed=1234, engine="bounded", first=(nearest[:-1], second))


def test_shared_first_assignment_matches_pml_on_omniglot_pixels(
    omniglot_zip: Path, monkeypatch
) -> None:
    """With the bounded engine forced on, ``evaluate_embeddings`` takes k-means' first
    assignment from the kNN blocks, and every metric still equals pytorch-metric-learning's on
    real Omniglot images."""
    import importlib

    metrics_pkg = importlib.import_module("oodml.metrics")
    clustering = importlib.import_module("oodml.metrics.clustering")
    monkeypatch.setattr(clustering, "BOUNDED_MIN_WORK", 0)
    used = []
    real = metrics_pkg.knn_and_nearest_rows
    monkeypatch.setattr(metrics_pkg, "knn_and_nearest_rows",
                        lambda *a, **kw: used.append(1) or real(*a, **kw))
    emb, labels = _omniglot_pixel_embeddings(omniglot_zip)
    ours = evaluate_embeddings(emb, labels, distance="euclidean", seed=1234)
    assert used
    ref = pml_accuracy(emb, np.unique(labels, return_inverse=True)[1])
    assert_matches_pml(ours, ref)
    assert ours["nmi"] == pytest.approx(ref["NMI"], abs=1e-9)
