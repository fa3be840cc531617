"""Clustering quality: faiss k-means with a fixed seed and our own NMI."""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch

from oodml.errors import ConfigError

FULL_DATA_POINTS_PER_CENTROID = 1_000_000_000


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Normalised mutual information, arithmetic-mean normalisation.

    Same definition and limit cases as scikit-learn's default
    ``normalized_mutual_info_score``: 1.0 when both labellings are one group, 0.0 when
    the mutual information is zero, otherwise MI / ((H(true) + H(pred)) / 2).
    """
    t = np.unique(np.asarray(labels_true), return_inverse=True)[1].ravel()
    p = np.unique(np.asarray(labels_pred), return_inverse=True)[1].ravel()
    if len(t) != len(p):
        raise ConfigError(f"label arrays differ in length: {len(t)} vs {len(p)}")
    nt, np_ = int(t.max(initial=-1)) + 1, int(p.max(initial=-1)) + 1
    if nt == np_ and nt <= 1:
        return 1.0
    pair = np.unique(t.astype(np.int64) * np_ + p, return_counts=True)
    joint = pair[1].astype(np.float64)
    ct = np.bincount(t, minlength=nt).astype(np.float64)
    cp = np.bincount(p, minlength=np_).astype(np.float64)
    n = float(len(t))
    ti, pi = pair[0] // np_, pair[0] % np_
    mi = float((joint / n * (np.log(joint * n) - np.log(ct[ti] * cp[pi]))).sum())
    mi = max(mi, 0.0)
    if mi == 0.0:
        return 0.0
    return mi / ((_entropy(ct) + _entropy(cp)) / 2)


KMEANS_ENGINES: tuple[str, ...] = ("auto", "bounded", "faiss")
BOUNDED_MIN_WORK = 2**30
_SPLIT_EPS = np.float32(1 / 1024)


def _faiss_init(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """faiss's initial centroids for this seed (its random permutation's first k rows), got
    from faiss itself by training with zero iterations."""
    import faiss

    cp = faiss.ClusteringParameters()
    cp.niter, cp.seed, cp.verbose = 0, seed, False
    cp.min_points_per_centroid, cp.max_points_per_centroid = 1, FULL_DATA_POINTS_PER_CENTROID
    clus = faiss.Clustering(x.shape[1], k, cp)
    clus.train(x, faiss.IndexFlatL2(x.shape[1]))
    return faiss.vector_float_to_array(clus.centroids).reshape(k, x.shape[1]).copy()


class _Mt19937Floats:
    """faiss's ``RandomGenerator(seed).rand_float()`` stream: std::mt19937 outputs (numpy's
    MT19937 with the same integer seeding) divided in float32 by float(2^32 - 1); drawn in
    batches and handed out in order."""

    def __init__(self, seed: int) -> None:
        self._mt = np.random.MT19937(0)
        self._mt._legacy_seeding(seed)
        self._buf = np.empty(0, dtype=np.float32)

    def take(self, m: int) -> np.ndarray:
        if len(self._buf) < m:
            more = self._mt.random_raw(max(m - len(self._buf), 4096)).astype(np.float32)
            self._buf = np.concatenate([self._buf, more / np.float32(np.iinfo(np.uint32).max)])
        return self._buf[:m]

    def consume(self, m: int) -> None:
        self._buf = self._buf[m:]


def _split_clusters(hassign: np.ndarray, centroids: np.ndarray, n: int) -> None:
    """faiss's empty-cluster handling, step for step: for each empty cluster ci, walk cj = 0,
    1, ... (cyclically) drawing r from a generator seeded 1234 until r < (h_cj - 1)/(n - k)
    (after 10 k draws: the largest cluster), copy centroid cj to ci, scale even coordinates by
    1 + 1/1024 in ci and 1 - 1/1024 in cj (odd ones the other way), and halve cj's count."""
    k = len(hassign)
    empty = np.flatnonzero(hassign == 0)
    if not len(empty):
        return
    rng = _Mt19937Floats(1234)
    denom = np.float64(np.float32(n - k))
    even = np.arange(centroids.shape[1]) % 2 == 0
    one = np.float32(1)
    up = np.where(even, one + _SPLIT_EPS, one - _SPLIT_EPS).astype(np.float32)
    down = np.where(even, one - _SPLIT_EPS, one + _SPLIT_EPS).astype(np.float32)
    for ci in empty:
        p = ((hassign.astype(np.float64) - 1.0) / denom).astype(np.float32)
        cj, tries = None, 0
        while cj is None and tries < 10 * k:
            m = min(k, 10 * k - tries)
            pos = (tries + np.arange(m)) % k
            hit = np.flatnonzero(rng.take(m) < p[pos])
            if len(hit):
                cj = int(pos[hit[0]])
                rng.consume(int(hit[0]) + 1)
            else:
                rng.consume(m)
            tries += m
        if cj is None:
            cj = int(np.argmax(hassign))
        centroids[ci] = centroids[cj] * up
        centroids[cj] = centroids[cj] * down
        hassign[ci] = hassign[cj] / np.float32(2)
        hassign[cj] -= hassign[ci]


def _nearest_two(
    xt: torch.Tensor, xsq: torch.Tensor, ct: torch.Tensor, csq: torch.Tensor, rows: torch.Tensor,
    block: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest centroid (ties: lower index) and the two smallest squared distances for
    ``rows``, as faiss computes them: |x|^2 + |c|^2 - 2 x.c in float32, blockwise."""
    best = torch.empty(len(rows), dtype=torch.int64)
    d1 = torch.empty(len(rows))
    d2 = torch.full((len(rows),), torch.inf)
    for s in range(0, len(rows), block):
        r = rows[s : s + block]
        dist = torch.addmm(csq[None, :], xt[r], ct.T, beta=1.0, alpha=-2.0).add_(xsq[r, None])
        if dist.shape[1] == 1:
            best[s : s + block], d1[s : s + block] = 0, dist[:, 0]
            continue
        v, i = torch.topk(dist, 2, dim=1, largest=False, sorted=True)
        swap = (v[:, 0] == v[:, 1]) & (i[:, 1] < i[:, 0])
        best[s : s + block] = torch.where(swap, i[:, 1], i[:, 0])
        d1[s : s + block], d2[s : s + block] = v[:, 0], v[:, 1]
    return best, d1, d2


def _cluster_sums(x: np.ndarray, assign: np.ndarray, k: int) -> np.ndarray:
    """Per-cluster float32 sums of the rows, each accumulated in row order as faiss does: a
    k x n 0/1 CSR matrix times ``x`` adds each row's columns in ascending (row) order."""
    n = len(x)
    onehot = scipy.sparse.csr_matrix(
        (np.ones(n, dtype=np.float32), (assign, np.arange(n))), shape=(k, n)
    )
    return np.ascontiguousarray(onehot @ x, dtype=np.float32)


def _lloyd_bounded(
    x: np.ndarray, k: int, niter: int, init: np.ndarray,
    first: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """faiss's Lloyd iterations (same initial centroids, float32 centroid sums in point
    order, the same empty-cluster splits, stop when the assignment repeats) with the
    assignment step pruned by exact distance bounds (Hamerly 2010).

    Each point keeps a lower bound ``lb`` on its distance to every centroid other than its
    own. When centroids move by delta_j, the triangle inequality gives
    |x - c_j'| >= |x - c_j| - delta_j, so ``lb`` drops by the largest move; the M = k/64
    largest movers (split centroids among them) are measured exactly instead, so one jump
    does not wipe out every bound. A point whose exact distance to its own centroid stays
    below ``lb`` keeps it; the others are assigned against all centroids. Bounds carry a
    relative slack of 1e-5 of |x|^2 + max|c|^2, far above float32 rounding, so the result
    is faiss's assignment except where two centroids tie within rounding.

    ``first`` (each row's nearest initial centroid and squared distance to the second
    nearest, computed elsewhere) replaces the first assignment step.
    """
    n = len(x)
    xt = torch.from_numpy(x)
    xsq = (xt * xt).sum(1)
    c = np.ascontiguousarray(init, dtype=np.float32).copy()
    movers = min(k, max(1, k // 64))
    prev = lb = None
    assign = torch.zeros(n, dtype=torch.int64)
    for it in range(niter + 1):
        ct = torch.from_numpy(c)
        csq = (ct * ct).sum(1)
        slack = 1e-5 * (xsq + csq.max())
        if lb is None:
            if first is None:
                assign, _, d2 = _nearest_two(xt, xsq, ct, csq, torch.arange(n))
            else:
                assign = torch.from_numpy(np.asarray(first[0], dtype=np.int64).copy())
                d2 = torch.from_numpy(np.asarray(first[1], dtype=np.float32))
            lb = (d2 - slack).clamp_min(0).sqrt()
        else:
            own = xsq + csq[assign] - 2 * (xt * ct[assign]).sum(1)
            redo = torch.nonzero((own + slack).clamp_min(0).sqrt() >= lb).flatten()
            if len(redo):
                assign[redo], _, d2 = _nearest_two(xt, xsq, ct, csq, redo)
                lb[redo] = (d2 - slack[redo]).clamp_min(0).sqrt()
        a = assign.numpy().copy()
        if it == niter or (prev is not None and np.array_equal(a, prev)):
            return a
        prev = a
        new = _cluster_sums(x, a, k)
        hassign = np.bincount(a, minlength=k).astype(np.float32)
        full = hassign > 0
        new[full] *= (np.float32(1) / hassign[full])[:, None]
        _split_clusters(hassign, new, n)
        delta = np.sqrt(((new.astype(np.float64) - c) ** 2).sum(1))
        order = np.argsort(-delta, kind="stable")
        top, rest = order[:movers], float(delta[order[movers]]) if movers < k else 0.0
        lb -= rest * (1 + 1e-6)
        c = new
        if delta[top[0]] > rest:
            ct, tt = torch.from_numpy(c), torch.from_numpy(top)
            md = torch.addmm((ct[tt] * ct[tt]).sum(1)[None, :], xt, ct[tt].T, alpha=-2.0)
            md.add_(xsq[:, None]).sub_(slack[:, None]).clamp_min_(0).sqrt_()
            md[assign[:, None] == tt[None, :]] = torch.inf
            lb = torch.minimum(lb, md.amin(1))
    return prev


def _gpu(device: str) -> bool:
    import faiss

    return device.startswith("cuda") and faiss.get_num_gpus() > 0


def _engine(n: int, n_clusters: int, dim: int, gpu: bool, engine: str) -> str:
    """The engine ``auto`` stands for: ``bounded`` on the CPU for big enough work."""
    if engine != "auto":
        return engine
    big = n * n_clusters * dim >= BOUNDED_MIN_WORK
    return "bounded" if big and not gpu else "faiss"


def bounded_start_rows(
    x: np.ndarray, n_clusters: int, *, seed: int = 0, device: str = "cpu", engine: str = "auto"
) -> np.ndarray | None:
    """Row indices of the initial centroids ``kmeans_assign`` starts from, in centroid order,
    when it will run the bounded engine from faiss's random initialisation; else None.

    They are the first ``n_clusters`` of faiss's ``rand_perm(n, seed + 1)``, checked against
    faiss's own initial centroids (None if another faiss version draws them differently).
    With them a caller that computes all pairwise scores anyway (``knn_and_nearest_rows``)
    can hand ``kmeans_assign`` its first assignment step (``first=``).
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if not 1 <= n_clusters < n or (
        _engine(n, n_clusters, x.shape[1], _gpu(device), engine) != "bounded"
    ):
        return None
    perm = np.empty(n, dtype=np.int32)
    faiss.rand_perm(faiss.swig_ptr(perm), n, seed + 1)
    rows = perm[:n_clusters].astype(np.int64)
    return rows if np.array_equal(x[rows], _faiss_init(x, n_clusters, seed)) else None


def kmeans_assign(
    x: np.ndarray,
    n_clusters: int,
    *,
    seed: int = 0,
    niter: int = 20,
    device: str = "cpu",
    init: np.ndarray | None = None,
    engine: str = "auto",
    first: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Cluster rows of ``x`` with faiss's k-means on every point and return each row's nearest
    centroid.

    Same settings as pytorch-metric-learning's default (20 iterations, one run, faiss's
    random initial centroids for ``seed``), so the same seed gives the same clustering,
    except that faiss's default training subsample (256 points per centroid) is lifted, as
    the ooDML study does (``max_points_per_centroid=1e9``): with subsampling, 10 classes x 500
    points cluster on half the data and NMI drops by ~0.1. ``init`` (n_clusters x D)
    replaces the random initial centroids.

    ``engine``: ``faiss`` runs ``faiss.Kmeans`` (on the GPU when ``device`` is CUDA);
    ``bounded`` runs the same iterations with the assignment step pruned by distance bounds
    (``_lloyd_bounded``: same result up to float32 ties, far fewer distance computations once
    clusters settle); ``auto`` is ``bounded`` on the CPU when one assignment step costs at least
    2^30 multiply-adds (below that its per-step overhead outweighs the savings), else ``faiss``.

    ``first``: (nearest, second) for the centroids at ``bounded_start_rows``, each row's
    nearest initial centroid and squared distance to the second nearest (as
    ``knn.knn_and_nearest_rows`` returns them); the bounded engine then skips its first
    assignment step. Ignored by the faiss engine and with ``init``.
    """
    import faiss

    if engine not in KMEANS_ENGINES:
        raise ConfigError(
            f"unknown k-means engine {engine!r}; choose one of: {', '.join(KMEANS_ENGINES)}"
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not 1 <= n_clusters <= len(x):
        raise ConfigError(f"cannot make {n_clusters} clusters from {len(x)} embeddings")
    if init is not None:
        init = np.ascontiguousarray(init, dtype=np.float32)
        if init.shape != (n_clusters, x.shape[1]):
            raise ConfigError(
                f"initial centroids have shape {init.shape}, need {(n_clusters, x.shape[1])}"
            )
    gpu = _gpu(device)
    engine = _engine(len(x), n_clusters, x.shape[1], gpu, engine)
    if engine == "bounded":
        if len(x) == n_clusters and init is None:
            return _lloyd_bounded(x, n_clusters, 0, x)
        if init is not None:
            return _lloyd_bounded(x, n_clusters, niter, init)
        if first is not None and not (
            len(first[0]) == len(first[1]) == len(x)
            and 0 <= int(np.min(first[0])) <= int(np.max(first[0])) < n_clusters
        ):
            raise ConfigError(
                f"first assignment must give {len(x)} centroids in 0..{n_clusters - 1}"
            )
        return _lloyd_bounded(x, n_clusters, niter, _faiss_init(x, n_clusters, seed), first)
    km = faiss.Kmeans(
        x.shape[1], n_clusters, niter=niter, seed=seed, gpu=gpu, verbose=False,
        min_points_per_centroid=1, max_points_per_centroid=FULL_DATA_POINTS_PER_CENTROID,
    )
    km.train(x, init_centroids=init)
    _, assign = km.index.search(x, 1)
    return assign.ravel().astype(np.int64)
