"""Exact k nearest neighbours (faiss or torch), chunked so SOP-sized sets fit in memory.

Neighbours are ranked by a score where larger is closer: the inner product of
L2-normalised rows for ``cosine``, minus the squared distance for ``euclidean``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from oodml.errors import ConfigError

Distance = Literal["cosine", "euclidean"]
DISTANCES: tuple[str, ...] = ("cosine", "euclidean")
BACKENDS: tuple[str, ...] = ("auto", "faiss", "torch")


def check_distance(distance: str) -> None:
    """Raise ConfigError for a distance name other than cosine or euclidean."""
    if distance not in DISTANCES:
        raise ConfigError(f"unknown distance {distance!r}; choose one of: {', '.join(DISTANCES)}")


def check_device(device: str) -> None:
    """Raise ConfigError when CUDA is requested but absent, or the device name is unknown."""
    if device == "cpu":
        return
    if not device.startswith("cuda"):
        raise ConfigError(f"unknown device {device!r}; use 'cpu' or 'cuda[:N]'")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} requested but CUDA is not available; use device 'cpu' (or 'auto')"
        )


def prepare(x: np.ndarray, distance: str) -> np.ndarray:
    """Return a C-contiguous float32 copy, L2-normalised for cosine (zero rows stay zero)."""
    check_distance(distance)
    x = np.array(x, dtype=np.float32, order="C", copy=True)
    if x.ndim != 2:
        raise ConfigError(f"embeddings must be a 2-d array (N x D), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ConfigError("embeddings contain NaN or inf; check the model output")
    if distance == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        np.divide(x, norms, out=x, where=norms > 0)
    return x


def _centre(q: np.ndarray, g: np.ndarray, self_mode: bool) -> None:
    """Shift both sets (``prepare``'s own copies) in place by the gallery mean: distances are
    unchanged but the float32 expansion |a|^2 + |b|^2 - 2ab loses far less precision to
    cancellation. Each difference is taken in float64 and rounded once."""
    mu = g.mean(axis=0, dtype=np.float64)
    np.subtract(g, mu, out=g, casting="unsafe")
    if not self_mode:
        np.subtract(q, mu, out=q, casting="unsafe")


def _faiss_gpu_ok(device: str) -> bool:
    import faiss

    return device.startswith("cuda") and hasattr(faiss, "StandardGpuResources") and (
        faiss.get_num_gpus() > 0
    )


def _drop_excluded(
    scores: np.ndarray, idx: np.ndarray, exclude: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Remove the excluded gallery index from each row of a (k+1)-wide result.

    Rows where it is absent (ties pushed it past k+1) lose their last column instead,
    which is still an exact answer because that item ties with the excluded one or is farther.
    """
    hit = idx == exclude[:, None]
    hit[~hit.any(axis=1), -1] = True
    first = hit.argmax(axis=1)
    keep = np.ones_like(hit)
    keep[np.arange(len(idx)), first] = False
    return scores[keep].reshape(len(idx), k), idx[keep].reshape(len(idx), k)


def _knn_faiss(
    q: np.ndarray, g: np.ndarray, k: int, distance: str, exclude: np.ndarray | None,
    device: str, chunk: int,
) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    extra = 0 if exclude is None else 1
    kk = min(k + extra, len(g))
    index = faiss.IndexFlatIP(g.shape[1]) if distance == "cosine" else faiss.IndexFlatL2(g.shape[1])
    if _faiss_gpu_ok(device):
        gpu = int(device.split(":")[1]) if ":" in device else 0
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), gpu, index)
    index.add(g)
    scores = np.empty((len(q), k), dtype=np.float32)
    idx = np.empty((len(q), k), dtype=np.int64)
    for s in range(0, len(q), chunk):
        d, i = index.search(q[s : s + chunk], kk)
        if distance == "euclidean":
            d = -d
        if exclude is not None:
            d, i = _drop_excluded(d, i, exclude[s : s + chunk], k)
        scores[s : s + chunk], idx[s : s + chunk] = d[:, :k], i[:, :k]
    return _sort_rows(torch.from_numpy(scores), torch.from_numpy(idx))


def _merge(
    vals: torch.Tensor, ids: torch.Tensor, new_vals: torch.Tensor, new_ids: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the k best of the running and the new candidates for each row."""
    allv = torch.cat([vals, new_vals], dim=1)
    alli = torch.cat([ids, new_ids], dim=1)
    top, pos = torch.topk(allv, k, dim=1, sorted=False)
    return top, torch.gather(alli, 1, pos)


def _block_scores(a: torch.Tensor, b: torch.Tensor, distance: str) -> torch.Tensor:
    s = a @ b.T
    if distance == "euclidean":
        s.mul_(2).sub_((a * a).sum(1, keepdim=True)).sub_((b * b).sum(1)[None, :])
    return s


def _candidates(s: torch.Tensor, offset: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    v, i = torch.topk(s, min(k, s.shape[1]), dim=1, sorted=False)
    return v, i + offset


def _sort_rows(vals: torch.Tensor, ids: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Sort by score descending, ties by gallery index ascending, so results are deterministic."""
    v, i = vals.cpu().numpy(), ids.cpu().numpy()
    order = np.lexsort((i, -v), axis=1)
    return np.take_along_axis(v, order, 1), np.take_along_axis(i, order, 1)


CHUNK = 4096
"""Most rows per score block."""

DIAGONAL_SHARE = 10
"""The self protocol computes n^2/2 + n * b/2 scores with blocks of b rows (diagonal blocks
whole), so it uses b = n / DIAGONAL_SHARE (at least 1024, at most ``chunk``): about 10% extra
products. At 20k x 512, 2048-row blocks took 15% less time than 4096; at SOP size 4096 stays
(fewer block pairs to merge, and the diagonal share is small anyway)."""

MERGE_MAX_WIDTH = 512
"""Widest padded row (k plus one row's candidates) merged row by row; wider goes global."""

_LOW = np.int64(0xFFFFFFFF)
_FLIP = np.int32(0x7FFFFFFF)
_PAD = np.iinfo(np.int64).min


def _keys(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """One int64 per (score, gallery index), ordered as (score ascending, index descending).

    The high half is the float32 score's bit pattern made order-preserving as an int32
    (negative floats have their magnitude bits flipped; -0.0 is first made +0.0 so it ties
    with 0.0 as the float compare does), the low half is 2^32 - 1 - index. The k largest keys
    of a row are then its k best neighbours with ties going to the lower index, so one
    integer selection replaces a two-key sort. Needs fewer than 2^32 rows.
    """
    u = np.add(scores, np.float32(0), dtype=np.float32).view(np.int32)
    high = np.where(u < 0, u ^ _FLIP, u).astype(np.int64)
    return (high << 32) | (_LOW - ids)


def _key_scores(keys: np.ndarray) -> np.ndarray:
    high = (keys >> 32).astype(np.int32)
    return np.where(high < 0, high ^ _FLIP, high).view(np.float32)


def _key_ids(keys: np.ndarray) -> np.ndarray:
    return _LOW - (keys & _LOW)


def _merge_keys(keys: np.ndarray, tau: np.ndarray, rows: np.ndarray, cand: np.ndarray) -> None:
    """Merge candidate keys into each touched row's k best keys, in place, and refresh that
    row's threshold ``tau`` (its k-th best score).

    Each touched row's k keys and its candidates go into one padded row (padding: the
    smallest int64) and the k largest are selected; keys are unique, so the result does not
    depend on candidate order. A block where one row receives more than
    ``MERGE_MAX_WIDTH - k`` candidates (many tied duplicates) is merged by one global sort
    by (row, key) instead, so the padded array stays small.
    """
    k = keys.shape[1]
    counts = np.bincount(rows, minlength=len(keys))
    urows = np.flatnonzero(counts)
    counts = counts[urows]
    width = k + int(counts.max(initial=0))
    if width > MERGE_MAX_WIDTH:
        _merge_keys_global(keys, urows, rows, cand)
    else:
        order = np.argsort(rows)
        start = np.cumsum(counts) - counts
        slot = k + np.arange(len(rows)) - np.repeat(start, counts)
        pad = np.full((len(urows), width), _PAD, dtype=np.int64)
        pad[:, :k] = keys[urows]
        pad[np.repeat(np.arange(len(urows)), counts), slot] = cand[order]
        keys[urows] = np.partition(pad, width - k, axis=1)[:, width - k :]
    tau[urows] = _key_scores(keys[urows].min(axis=1))


def _merge_keys_global(
    keys: np.ndarray, urows: np.ndarray, rows: np.ndarray, cand: np.ndarray
) -> None:
    """``_merge_keys`` by one sort by (row ascending, key descending)."""
    k = keys.shape[1]
    r = np.concatenate([np.repeat(urows, k), rows])
    c = np.concatenate([keys[urows].ravel(), cand])
    order = np.lexsort((-c, r))
    r, c = r[order], c[order]
    rank = np.arange(len(r)) - np.searchsorted(r, r)
    keep = rank < k
    keys[r[keep], rank[keep]] = c[keep]


class _Scores:
    """Score blocks of the self protocol: a.b for cosine, 2 a.b - (|a|^2 + |b|^2) = -|a - b|^2
    for euclidean.

    Both are symmetric to the last bit between blocks of one shape: the product pairs x_a[k]
    with x_b[k] (or 2 x_b[k], an exact doubling) in the same order whichever row is on the
    left, and the two norms are added before they are subtracted. So identical rows score
    identically against the rows of a full block (their ties resolve by index, and k-means'
    first step read from the blocks sees the ties it would). A product of another shape (the
    last, shorter block) may round differently.
    """

    def __init__(self, xt: torch.Tensor, distance: str, chunk: int) -> None:
        self.x = xt
        self.chunk = chunk = min(chunk, max(1024, -(-len(xt) // DIAGONAL_SHARE)))
        self.right = xt if distance == "cosine" else 2 * xt
        self.sq = None if distance == "cosine" else (xt * xt).sum(1)
        size = min(chunk, len(xt)) ** 2
        self._out = torch.empty(size, dtype=xt.dtype, device=xt.device)
        self._norms = None if self.sq is None else torch.empty_like(self._out)

    def block(self, a: int, b: int) -> torch.Tensor:
        """Scores of rows a.. against rows b.., written into one reused buffer (fresh memory
        for every block costs page faults): valid until the next call."""
        xa, xb = self.x[a : a + self.chunk], self.right[b : b + self.chunk]
        s = self._out[: len(xa) * len(xb)].view(len(xa), len(xb))
        torch.mm(xa, xb.T, out=s)
        if self._norms is not None:
            norms = self._norms[: s.numel()].view_as(s)
            torch.add(self.sq[a : a + len(xa), None], self.sq[None, b : b + len(xb)], out=norms)
            s.sub_(norms)
        return s


def _passing(
    s: torch.Tensor, t_rows: torch.Tensor, t_cols: torch.Tensor | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and scores of the entries of block ``s`` at or above their row's
    threshold or (when given) their column's: two multi-threaded compares and one flat
    nonzero (several times faster than a 2-d one)."""
    mask = torch.ge(s, t_rows[:, None])
    if t_cols is not None:
        mask.logical_or_(torch.ge(s, t_cols[None, :]))
    flat = np.flatnonzero(mask.numpy())
    r, c = np.divmod(flat, s.shape[1])
    return r, c, s.numpy().ravel()[flat]


def _fold_best_two(best: np.ndarray, lo: int, sub: torch.Tensor, pos: np.ndarray) -> None:
    """Fold block scores ``sub`` (rows lo.., one column per probe row, ``pos`` its position in
    the probe) into those rows' two best keys ``best`` (n x 2), in place."""
    if sub.shape[1] == 0:
        return
    v, i = torch.topk(sub, min(2, sub.shape[1]), dim=1)
    rows = slice(lo, lo + len(sub))
    both = np.concatenate([best[rows], _keys(v.numpy(), pos[i.numpy()])], axis=1)
    best[rows] = np.sort(both, axis=1)[:, -2:]


def _top_both_ways(
    s: torch.Tensor, a: int, b: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, gallery index, score) of each row's and each column's exact top k in block
    ``s`` (rows a.., columns b..)."""
    rows, ids, vals = [], [], []
    for blk, lo, off in ((s, a, b), (s.T, b, a)):
        v, i = torch.topk(blk, min(k, blk.shape[1]), dim=1)
        rows.append(np.repeat(np.arange(lo, lo + blk.shape[0]), i.shape[1]))
        ids.append(i.numpy().ravel() + off)
        vals.append(v.numpy().ravel())
    return np.concatenate(rows), np.concatenate(ids), np.concatenate(vals)


def _self_pruned(
    x: np.ndarray, k: int, distance: str, chunk: int, probe: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """Self-protocol kNN on the CPU, computing each symmetric score block once.

    Every row keeps its k best (score, index) pairs as ``_keys`` and its k-th best score
    ``tau``, which can only rise. Pass 1 takes each row's top k within its own diagonal
    block. Pass 2 visits each off-diagonal block pair (a < b) once: score s_ij serves row i
    (against tau_i) and row j (against tau_j), and only entries >= a threshold can enter a
    top k, so compares and a merge of the few survivors replace two top-k passes (one over a
    transposed copy). Entries equal to a threshold are kept, so ties resolve by index. A
    block where too many entries pass (many duplicate rows) contributes its exact top k both
    ways instead, which bounds work and memory per block.

    With ``probe`` (distinct row indices) it also returns every row's two best keys against
    the probe rows, itself included (ids: positions in ``probe``), read from the same blocks
    (the probe columns of each block, and its probe rows transposed): the nearest of a set
    of rows costs no extra products, and the neighbours are exactly those without it.
    """
    n = len(x)
    scores = _Scores(torch.from_numpy(x), distance, chunk)
    chunk = scores.chunk
    empty = _keys(np.array([-np.inf], dtype=np.float32), np.array([_LOW]))[0]
    keys = np.full((n, k), empty, dtype=np.int64)
    tau = np.full(n, -np.inf, dtype=np.float32)
    tau_t = torch.from_numpy(tau)
    limit = 4 * k * chunk
    starts = list(range(0, n, chunk))
    at = np.full(n, -1, dtype=np.int64)
    if probe is not None:
        at[probe] = np.arange(len(probe))
    best = np.full((n, 2), empty, dtype=np.int64)

    def fold(s: torch.Tensor, a: int, b: int) -> None:
        if probe is None:
            return
        cols = np.flatnonzero(at[b : b + s.shape[1]] >= 0)
        _fold_best_two(best, a, s[:, torch.from_numpy(cols)], at[b + cols])
        if a != b:
            rows = np.flatnonzero(at[a : a + len(s)] >= 0)
            _fold_best_two(best, b, s[torch.from_numpy(rows)].T.contiguous(), at[a + rows])

    for a in starts:
        s = scores.block(a, a)
        fold(s, a, a)
        s.fill_diagonal_(-torch.inf)
        kk = min(k, s.shape[1] - 1)
        if kk == 0:
            continue
        t = torch.topk(s, kk, dim=1, sorted=False).values.amin(1)
        r, c, v = _passing(s, t, None)
        _merge_keys(keys, tau, r + a, _keys(v, c + a))
    for bi, b in enumerate(starts):
        for a in starts[:bi]:
            s = scores.block(a, b)
            fold(s, a, b)
            ta, tb = tau_t[a : a + len(s)], tau_t[b : b + s.shape[1]]
            r, c, v = _passing(s, ta, tb)
            if len(r) > limit:
                rows, ids, vals = _top_both_ways(s, a, b, k)
            else:
                by_row = v >= ta.numpy()[r]
                by_col = v >= tb.numpy()[c]
                rows = np.concatenate([r[by_row] + a, c[by_col] + b])
                ids = np.concatenate([c[by_row] + b, r[by_col] + a])
                vals = np.concatenate([v[by_row], v[by_col]])
            _merge_keys(keys, tau, rows, _keys(vals, ids))
    keys = np.sort(keys, axis=1)[:, ::-1]
    if probe is None:
        return _key_scores(keys), _key_ids(keys)
    best = best[:, ::-1]
    return _key_scores(keys), _key_ids(keys), _key_scores(best), _key_ids(best)


def _self_topk(
    x: np.ndarray, k: int, distance: str, device: str, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """Self-protocol kNN on any device: each symmetric block once, exact top-k both ways
    (the route for CUDA, where top-k is cheap)."""
    xt = torch.from_numpy(x).to(device)
    n = len(xt)
    scores = _Scores(xt, distance, chunk)
    chunk = scores.chunk
    vals = torch.full((n, k), -torch.inf, device=xt.device)
    ids = torch.full((n, k), -1, dtype=torch.int64, device=xt.device)
    starts = list(range(0, n, chunk))
    for a in starts:
        s = scores.block(a, a)
        s.fill_diagonal_(-torch.inf)
        kk = min(k, s.shape[1] - 1)
        if kk:
            v, i = torch.topk(s, kk, dim=1, sorted=False)
            vals[a : a + chunk, :kk], ids[a : a + chunk, :kk] = v, i + a
    for bi, b in enumerate(starts):
        for a in starts[:bi]:
            s = scores.block(a, b)
            for lo, blk, off in ((a, s, b), (b, s.T.contiguous(), a)):
                v, i = _candidates(blk, off, k)
                hi = lo + blk.shape[0]
                vals[lo:hi], ids[lo:hi] = _merge(vals[lo:hi], ids[lo:hi], v, i, k)
    return _sort_rows(vals, ids)


def _knn_torch_self(
    x: np.ndarray, k: int, distance: str, device: str, chunk: int, prune: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Self-protocol kNN: thresholds and merged survivors (``_self_pruned``; the default on
    the CPU) or exact top-k per block (``_self_topk``; the default elsewhere)."""
    if prune is None:
        prune = torch.device(device).type == "cpu"
    if prune:
        return _self_pruned(x, k, distance, chunk)
    return _self_topk(x, k, distance, device, chunk)


def _knn_torch(
    q: np.ndarray, g: np.ndarray, k: int, distance: str, exclude: np.ndarray | None,
    device: str, chunk: int,
) -> tuple[np.ndarray, np.ndarray]:
    gt = torch.from_numpy(g).to(device)
    out_v, out_i = [], []
    for s in range(0, len(q), chunk):
        qt = torch.from_numpy(q[s : s + chunk]).to(device)
        sc = _block_scores(qt, gt, distance)
        if exclude is not None:
            ex = torch.from_numpy(exclude[s : s + chunk]).to(sc.device)
            rows = torch.nonzero(ex >= 0).flatten()
            sc[rows, ex[rows]] = -torch.inf
        v, i = torch.topk(sc, k, dim=1, sorted=False)
        v, i = _sort_rows(v, i)
        out_v.append(v)
        out_i.append(i)
    return np.concatenate(out_v), np.concatenate(out_i)


def knn(
    query: np.ndarray,
    k: int,
    gallery: np.ndarray | None = None,
    *,
    distance: str = "cosine",
    exclude: np.ndarray | None = None,
    backend: str = "auto",
    device: str = "cpu",
    chunk: int = CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest gallery rows for every query row; returns (scores, indices), N x k.

    ``gallery=None`` is the DML protocol: the query set is also the gallery and each
    query's own row is excluded by index (not by dropping the first neighbour, which may
    be a duplicate). ``exclude`` gives, per query, one gallery index to skip (-1 for none).
    Scores are larger-is-closer; rows are sorted by score, ties by index.
    ``backend="auto"``: on the CPU in the self protocol the torch route, which computes each
    symmetric score block once and prunes the top-k by thresholds (about half faiss's
    matrix products, see ``benchmarks/bench_metrics.py``); faiss otherwise.
    """
    check_distance(distance)
    check_device(device)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown knn backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    q = prepare(query, distance)
    self_mode = gallery is None
    g = q if self_mode else prepare(gallery, distance)
    if q.shape[1] != g.shape[1]:
        raise ConfigError(f"query dim {q.shape[1]} != gallery dim {g.shape[1]}")
    if distance == "euclidean":
        _centre(q, g, self_mode)
    if self_mode:
        exclude = np.arange(len(q), dtype=np.int64)
    elif exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64)
    available = len(g) - (1 if exclude is not None else 0)
    if not 1 <= k <= available:
        raise ConfigError(f"k={k} neighbours requested but only {available} gallery items exist")
    if backend == "auto":
        backend = "torch" if self_mode and device == "cpu" else "faiss"
    if backend == "faiss":
        return _knn_faiss(q, g, k, distance, exclude, device, chunk)
    if self_mode:
        return _knn_torch_self(q, k, distance, device, chunk)
    return _knn_torch(q, g, k, distance, exclude, device, chunk)


def knn_and_nearest_rows(
    x: np.ndarray, k: int, rows: np.ndarray, *, distance: str = "cosine", chunk: int = CHUNK
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``knn(x, k, distance=...)`` on the CPU (the pruned self-protocol route), plus each
    row's nearest among the rows ``rows`` (distinct indices) and its squared Euclidean
    distance to the second nearest, taken from the same score blocks.

    Returns (scores, indices, nearest, second): ``nearest[i]`` is a position in ``rows``
    (a row in ``rows`` is its own nearest), ``second[i]`` a squared distance between the
    ``prepare``d rows (inf when ``rows`` has one entry). This is k-means' first assignment
    when its initial centroids are rows of ``x``, at no extra matrix product; see
    ``clustering.bounded_start_rows``. For cosine the ``rows`` must be non-zero: all other
    prepared rows have unit length, so the cosine score orders them as the distance does.
    """
    check_distance(distance)
    x = prepare(x, distance)
    rows = np.asarray(rows, dtype=np.int64)
    if not 1 <= k <= len(x) - 1:
        raise ConfigError(f"k={k} neighbours requested but only {len(x) - 1} gallery items exist")
    if len(np.unique(rows)) != len(rows) or not len(rows) or rows.min() < 0 or (
        rows.max() >= len(x)
    ):
        raise ConfigError("rows must be distinct indices into x")
    sq = (x * x).sum(1, dtype=np.float32)
    if distance == "cosine" and (sq[rows] == 0).any():
        raise ConfigError("rows include a zero embedding: its cosine score ties every row, "
                          "so it cannot be ranked by distance; use knn and kmeans_assign")
    if distance == "euclidean":
        _centre(x, x, True)
    scores, ids, pv, pi = _self_pruned(x, k, distance, chunk, probe=rows)
    if distance == "euclidean":
        second = -pv[:, 1].astype(np.float64)
    else:
        second = sq + sq[rows[np.minimum(pi[:, 1], len(rows) - 1)]] - 2 * pv[:, 1].astype(
            np.float64
        )
    second[pv[:, 1] == -np.inf] = np.inf
    return scores, ids, pi[:, 0], second
