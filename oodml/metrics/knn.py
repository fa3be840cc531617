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


def _centre(q: np.ndarray, g: np.ndarray, self_mode: bool) -> tuple[np.ndarray, np.ndarray]:
    """Shift both sets by the gallery mean: distances are unchanged but the float32
    expansion |a|^2 + |b|^2 - 2ab loses far less precision to cancellation."""
    mu = g.mean(axis=0, dtype=np.float64)
    gc = (g - mu).astype(np.float32)
    return (gc, gc) if self_mode else ((q - mu).astype(np.float32), gc)


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


def _knn_torch_self(x: np.ndarray, k: int, distance: str, device: str, chunk: int):
    """Self-protocol kNN computing each symmetric score block once (half the matmuls)."""
    xt = torch.from_numpy(x).to(device)
    n = len(xt)
    vals = torch.full((n, k), -torch.inf, device=xt.device)
    ids = torch.full((n, k), -1, dtype=torch.int64, device=xt.device)
    starts = list(range(0, n, chunk))
    for a in starts:
        xa = xt[a : a + chunk]
        for b in starts[starts.index(a) :]:
            s = _block_scores(xa, xt[b : b + chunk], distance)
            if a == b:
                s.fill_diagonal_(-torch.inf)
            v, i = _candidates(s, b, k)
            vals[a : a + chunk], ids[a : a + chunk] = _merge(
                vals[a : a + chunk], ids[a : a + chunk], v, i, k
            )
            if a != b:
                v, i = _candidates(s.T.contiguous(), a, k)
                vals[b : b + chunk], ids[b : b + chunk] = _merge(
                    vals[b : b + chunk], ids[b : b + chunk], v, i, k
                )
    return _sort_rows(vals, ids)


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
    chunk: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest gallery rows for every query row; returns (scores, indices), N x k.

    ``gallery=None`` is the DML protocol: the query set is also the gallery and each
    query's own row is excluded by index (not by dropping the first neighbour, which may
    be a duplicate). ``exclude`` gives, per query, one gallery index to skip (-1 for none).
    Scores are larger-is-closer; rows are sorted by score, ties by index.
    ``backend="auto"`` is faiss (measured faster here than the torch route, which computes
    each symmetric block once but pays for two top-k passes per block).
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
        q, g = _centre(q, g, self_mode)
    if self_mode:
        exclude = np.arange(len(q), dtype=np.int64)
    elif exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64)
    available = len(g) - (1 if exclude is not None else 0)
    if not 1 <= k <= available:
        raise ConfigError(f"k={k} neighbours requested but only {available} gallery items exist")
    if backend == "auto":
        backend = "faiss"
    if backend == "faiss":
        return _knn_faiss(q, g, k, distance, exclude, device, chunk)
    if self_mode:
        return _knn_torch_self(q, k, distance, device, chunk)
    return _knn_torch(q, g, k, distance, exclude, device, chunk)
