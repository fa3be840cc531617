"""Reference implementations and builders the tests share, written from the definitions
with numpy and scipy only, so that a test comparing the library with them can fail.

* :func:`frechet_rows`: the Fréchet distance of Gaussians fitted to two sets of rows.
* :func:`oodml_walk`: the published ooDML ladder walk, list by list.
* :func:`clustered`: labelled features of classes drawn around a few group centres.
* :func:`study_spec`: a quick training run on the synthetic ``study`` fixture.
* :func:`study_args`: the command line of ``oodml evaluate``/``fewshot`` on that study.
* :func:`one_line_error`: what every failing command must print.
* :func:`classes_along_e1`, :func:`hand_ladder`: a small ladder whose order is known.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg as sla


def frechet_rows(x: np.ndarray, y: np.ndarray, eps: float = 0.0) -> float:
    """Fréchet distance between the Gaussians fitted to the rows of ``x`` and ``y`` (means,
    unbiased covariances S1, S2, plus ``eps`` I on both):

        ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr (S1^1/2 S2 S1^1/2)^1/2.

    For any factors S1 = F1 F1^T and S2 = F2 F2^T the last trace is the nuclear norm of
    F1^T F2 (polar decomposition: S^1/2 = F Q with Q orthogonal on F's range, so
    S1^1/2 S2^1/2 = Q1^T F1^T F2 Q2 has the singular values of F1^T F2). The factors are the
    centred rows over sqrt(n - 1) when eps = 0 (exact for the singular covariances of fewer
    rows than columns), else Cholesky factors; no matrix square root is formed."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    diff = x.mean(0) - y.mean(0)
    a = (x - x.mean(0)) / np.sqrt(len(x) - 1)
    b = (y - y.mean(0)) / np.sqrt(len(y) - 1)
    traces = (a * a).sum() + (b * b).sum() + 2.0 * eps * x.shape[1]
    if eps == 0:
        f1, f2 = a.T, b.T
    else:
        eye = eps * np.eye(x.shape[1])
        f1 = sla.cholesky(a.T @ a + eye, lower=True)
        f2 = sla.cholesky(b.T @ b + eye, lower=True)
    cross = sla.svdvals(f1.T @ f2).sum()
    return float(diff @ diff + traces - 2.0 * cross)


def in_span(x: np.ndarray, y: np.ndarray) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """(mean, covariance) of the rows of ``x`` and of ``y`` in an orthonormal basis U of the
    span of both sides' centred rows and their mean difference.

    Every covariance and the mean difference lie in that span, so with the means written as
    U^T mu and the covariances as U^T S U, |mu_x - mu_y|^2, tr S_x, tr S_y and
    tr (S_x S_y)^{1/2} (the square root's nonzero eigenvalues) are unchanged: the Fréchet
    distance is the same number, but a reference ``sqrtm`` works on r <= n_x + n_y - 1 dims
    instead of D (2048-d: 50 s on two cores, against milliseconds)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    mx, my = x.mean(0), y.mean(0)
    u = row_basis(np.vstack([x - mx, y - my, (mx - my)[None]]))
    return tuple((m @ u, np.cov(z @ u, rowvar=False)) for m, z in ((mx, x), (my, y)))


def row_basis(a: np.ndarray) -> np.ndarray:
    """An orthonormal basis (D x rank) of the span of the rows of ``a`` (directions with
    singular values below 1e-12 of the largest dropped)."""
    _, sv, vt = np.linalg.svd(a, full_matrices=False)
    return vt[sv > sv[0] * 1e-12].T


def oodml_walk(
    means: np.ndarray,
    names: Sequence[str],
    train: Sequence[int],
    test: Sequence[int],
    iterations: int,
    swaps: int,
    history: int,
    fd: Callable[[list[int], list[int]], float],
) -> dict[int, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], float]]:
    """The published ooDML walk, list-based: step index -> (train, test, removed, distance).

    Each iteration ranks every train class by ||x - mu_test|| - ||x - mu_train|| (and every
    test class the other way round), walks both orders in lockstep from offset k for the k-th
    of ``swaps`` swaps, skips the classes picked in the last ``history`` picks of its side,
    and swaps the pair. ``iterations`` easier steps (reversed orders) and harder steps from the
    start, then up to ``iterations + 10`` removal steps: an iteration whose swaps do not raise
    ``fd`` is undone and its classes are removed instead, until a side would keep fewer than 2.
    ``fd(train, test)`` takes lists of row indices into ``means``.
    """

    def picks(tr: list[int], te: list[int], hist_a: list[int], hist_b: list[int],
              reverse: bool) -> list[tuple[int, int]]:
        xa, xb = means[tr], means[te]
        mu_a, mu_b = xa.mean(0), xb.mean(0)
        sa = np.linalg.norm(xa - mu_b, axis=1) - np.linalg.norm(xa - mu_a, axis=1)
        sb = np.linalg.norm(xb - mu_a, axis=1) - np.linalg.norm(xb - mu_b, axis=1)
        oa = [int(i) for i in np.argsort(sa, kind="stable")]
        ob = [int(i) for i in np.argsort(sb, kind="stable")]
        if reverse:
            oa, ob = oa[::-1], ob[::-1]
        out = []
        for k in range(swaps):
            got_a = got_b = None
            for ca, cb in zip(oa[k:], ob[k:], strict=False):
                if got_a is None and ca not in hist_a[-history:]:
                    got_a = ca
                    hist_a.append(ca)
                if got_b is None and cb not in hist_b[-history:]:
                    got_b = cb
                    hist_b.append(cb)
                if got_a is not None and got_b is not None:
                    break
            tr[got_a], te[got_b] = te[got_b], tr[got_a]
            out.append((got_a, got_b))
        return out

    rec = []
    for reverse, sign in ((True, -1), (False, 1)):
        tr, te, ha, hb = list(train), list(test), [], []
        for i in range(iterations):
            rec.append((sign * i * swaps, list(tr), list(te), [], fd(tr, te)))
            picks(tr, te, ha, hb, reverse)
    ha, hb, removed = [], [], []
    for i in range(iterations + 10):
        before = fd(tr, te)
        rec.append((iterations * swaps + i * swaps, list(tr), list(te), list(removed), before))
        old = (list(tr), list(te))
        made = picks(tr, te, ha, hb, False)
        if fd(tr, te) >= before:
            tr, te = old
            if min(len(tr) - len({a for a, _ in made}), len(te) - len({b for _, b in made})) < 2:
                break
            for p in sorted({a for a, _ in made}, reverse=True):
                removed.append(tr.pop(p))
            for p in sorted({b for _, b in made}, reverse=True):
                removed.append(te.pop(p))
    out: dict[int, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], float]] = {}
    for idx, tr, te, rm, d in rec:
        out.setdefault(idx, (tuple(names[c] for c in tr), tuple(names[c] for c in te),
                             tuple(names[c] for c in rm), d))
    return out


def clustered(n_classes: int = 40, per_class: int = 8, dim: int = 12, groups: int = 4,
              seed: int = 0, spread: float = 4.0) -> tuple[np.ndarray, list[str]]:
    """Features (rows) and labels ``cNNN`` of classes whose means are drawn around ``groups``
    centres (``spread`` apart), so that splits can differ a lot; images scatter 0.5 around
    their class mean."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, dim)) * spread
    means = centres[np.arange(n_classes) % groups] + rng.standard_normal((n_classes, dim))
    x = np.concatenate([m + 0.5 * rng.standard_normal((per_class, dim)) for m in means])
    labels = [f"c{c:03d}" for c in range(n_classes) for _ in range(per_class)]
    return x, labels


def study_spec(study: Any, out: Path, split_id: int = 1, seed: int = 0, **kw: Any):
    """A RunSpec on the synthetic ``study`` fixture: two epochs of small batches, results in
    ``out``, no size-controlled gallery; ``kw`` overrides any field (loss: multisimilarity)."""
    from oodml.train.loop import TrainConfig
    from oodml.train.spec import RunSpec

    kw.setdefault("loss", "multisimilarity")
    kw.setdefault("train", TrainConfig(epochs=2, batch_size=16, m=4))
    kw.setdefault("gallery_classes", 0)
    return RunSpec(splitfile=str(study.splitfile), root=str(study.root), split_id=split_id,
                   seed=seed, results_dir=str(out), cache_dir=str(study.cache_dir), **kw)


def study_args(study: Any, command: str, out: Path, *extra: str) -> list[str]:
    """``oodml COMMAND`` on the synthetic ``study`` (its split file, root and feature cache)
    with the options ``extra``, results in ``out`` (the last two arguments)."""
    return [command, str(study.splitfile), "--root", str(study.root), "--cache",
            str(study.cache_dir), *extra, "--out", str(out)]


def one_line_error(code: int, err: str) -> str:
    """The one ``error: ...`` line a failed command printed (no traceback, exit code not 0)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def classes_along_e1(seed: int, spacing: float = 1.0, dim: int = 6, n_classes: int = 16,
                     per_class: int = 5):
    """Class statistics of ``n_classes`` classes ``k00``... whose centres are unit normal plus
    ``spacing`` times the class number along e_1, images 0.2 around them; and the names."""
    from oodml.stats.class_stats import ClassStats

    rng = np.random.default_rng(seed)
    names = [f"k{i:02d}" for i in range(n_classes)]
    centres = rng.standard_normal((n_classes, dim))
    centres[:, 0] += spacing * np.arange(n_classes)
    x = np.repeat(centres, per_class, axis=0) + 0.2 * rng.standard_normal(
        (n_classes * per_class, dim))
    return ClassStats.from_features(x, np.repeat(names, per_class).tolist()), names


def hand_ladder(stats: Any, rungs: Sequence[Sequence[str]]):
    """A class-means split file made by hand: split i tests the classes ``rungs[i - 1]`` and
    trains on the others of ``stats``, at their exact distance (extractor ``ext-a``)."""
    from oodml.splits.splitfile import Split, SplitFile
    from oodml.stats.modes import distance_within

    splits = []
    for i, test in enumerate(rungs, start=1):
        train = [c for c in stats.classes if c not in test]
        splits.append(Split(id=i, distance=distance_within(stats, train, test), is_start=i == 1,
                            train=tuple(train), test=tuple(test)))
    return SplitFile(dataset_name="synthetic", dataset_fingerprint=None, class_counts=None,
                     extractor="ext-a", weights_sha256=None, distance_mode="class-means",
                     procedure="hand", params={}, seed=0, ladder=splits)
