"""BLAS thread control and thread-parallel stacks of small dense problems.

OpenBLAS rounds differently with another thread count, so everything here is about which
thread count a computation runs under: one BLAS thread for small problems
(:func:`blas_threads_for`, :func:`one_blas_thread`) and :func:`stacked`, which splits a stack
of small problems across one Python thread per core with the same bits as one call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache

import numpy as np

_ONE_THREAD_MAX_DIM = 512


@lru_cache(maxsize=1)
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def blas_threads_for(dim: int) -> AbstractContextManager:
    """One BLAS thread for problems of dimension <= 512, where thread start-up dominates and
    a busy machine makes multi-threaded small factorisations ~100x slower; no-op otherwise
    (or when threadpoolctl is not installed)."""
    return one_blas_thread() if dim <= _ONE_THREAD_MAX_DIM else nullcontext()


def one_blas_thread() -> AbstractContextManager:
    """BLAS held to one thread inside (a no-op without threadpoolctl). Not thread-safe on its
    own: threads that nest it must run inside an outer one, so every exit restores 1."""
    controller = _blas_controller()
    if controller is None:
        return nullcontext()
    return controller.limit(limits=1, user_api="blas")


STACK_CHUNK = 4


def _stack_pool() -> tuple[ThreadPoolExecutor | None, int]:
    """(pool, workers) of this process (a forked child makes its own)."""
    return _stack_pool_of(os.getpid())


@lru_cache(maxsize=1)
def _stack_pool_of(pid: int) -> tuple[ThreadPoolExecutor | None, int]:
    """One thread per usable core, at most 8; no pool on one core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(cores or 1, 8)
    if workers < 2:
        return None, 1
    return ThreadPoolExecutor(workers, thread_name_prefix="oodml-stack"), workers


def stack_workers() -> int:
    """Threads :func:`stacked` splits a stack across in this process (1: no pool)."""
    return _stack_pool()[1]


def stacked(fn: Callable[..., np.ndarray], *arrays: np.ndarray) -> np.ndarray:
    """``fn(*arrays)`` for a function that works row by row along axis 0 (the same length
    for every array), split into chunks of at least ``STACK_CHUNK`` rows, one thread per
    core.

    For stacks of small dense problems (the greedy screen's n x n eigenproblems): NumPy and
    LAPACK release the GIL, so otherwise all but one core would idle. While the threads run,
    BLAS is held to one thread of its own (BLAS threads on top of one thread per core ran the
    CUB-sized screen slower on 2 cores than on 1). Every row goes through the same calls
    either way, so the result is identical to ``fn(*arrays)``.
    """
    pool, workers = _stack_pool()
    n = len(arrays[0])
    if pool is None or n < 2 * STACK_CHUNK:
        return fn(*arrays)
    parts = min(workers, n // STACK_CHUNK)
    cuts = np.linspace(0, n, parts + 1).astype(int)
    chunks = [[x[i:j] for x in arrays] for i, j in zip(cuts[:-1], cuts[1:], strict=True)]
    with one_blas_thread():
        return np.concatenate(list(pool.map(lambda c: fn(*c), chunks)))
