"""Run a grid of independent tasks with retries, skipping finished ones, on a pluggable backend.

The engine knows nothing about training: a task is a key plus an opaque spec, ``execute(spec)``
does the work and writes the task's own result file atomically, and ``is_done(spec)`` says
whether that file exists. Backends (``local``, ``ray``) only differ in where ``execute`` runs.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Protocol

from oodml.errors import first_line
from oodml.progress import format_duration


@dataclass(frozen=True)
class Task:
    """One unit of a sweep: ``key`` names it in messages and result files."""

    key: str
    spec: Any


@dataclass
class SweepState:
    """Live counts for the progress line; ``failed`` maps a task key to its last error."""

    total: int
    skipped: int = 0
    done: int = 0
    running: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    retried: dict[str, int] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)

    @property
    def left(self) -> int:
        return self.total - self.skipped - self.done - len(self.failed)

    def eta_seconds(self) -> float | None:
        """Wall seconds per finished task so far (already shared among the parallel workers)
        times the tasks left."""
        if self.left == 0:
            return 0.0
        if self.done == 0:
            return None
        per_task = (time.monotonic() - self.started_at) / self.done
        return per_task * self.left

    def line(self) -> str:
        eta = self.eta_seconds()
        eta_text = "?" if eta is None else format_duration(eta)
        return (
            f"done {self.done} · running {self.running} · failed {len(self.failed)} · "
            f"left {self.left} · skipped {self.skipped} · ETA {eta_text}"
        )


class Backend(Protocol):
    def run(
        self,
        tasks: list[Task],
        execute: Callable[[Any], Any],
        state: SweepState,
        retries: int,
        on_update: Callable[[SweepState], None],
    ) -> None: ...


def pending_tasks(tasks: Iterable[Task], is_done: Callable[[Any], bool]) -> tuple[list[Task], int]:
    """The tasks whose result does not exist yet, and how many were skipped as finished."""
    todo, skipped = [], 0
    for t in tasks:
        if is_done(t.spec):
            skipped += 1
        else:
            todo.append(t)
    return todo, skipped


def run_tasks(
    tasks: list[Task],
    execute: Callable[[Any], Any],
    is_done: Callable[[Any], bool],
    backend: Backend,
    *,
    retries: int = 2,
    on_update: Callable[[SweepState], None] | None = None,
) -> SweepState:
    """Run every unfinished task on ``backend``; failures are retried, then recorded, not raised."""
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"duplicate sweep tasks: {dup[:5]}")
    todo, skipped = pending_tasks(tasks, is_done)
    state = SweepState(total=len(tasks), skipped=skipped)
    update = on_update or (lambda _s: None)
    update(state)
    if todo:
        backend.run(todo, execute, state, retries, update)
    state.running = 0
    update(state)
    return state


class LocalBackend:
    """Runs tasks one after another; an exception is retried ``retries`` times.

    ``isolate=False`` runs them in this process. ``isolate=True`` runs them in one worker
    process (spawned, so ``execute`` and the specs must be picklable, and restarted when it
    dies): a task that kills its process (``os._exit``, a segfault, the OOM killer) is then
    retried and reported as failed like any other, instead of ending the whole sweep without a
    word."""

    name = "local"

    def __init__(self, isolate: bool = False) -> None:
        self.isolate = isolate
        self._pool: ProcessPoolExecutor | None = None

    def _call(self, execute: Callable[[Any], Any], spec: Any) -> Any:
        if not self.isolate:
            return execute(spec)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
        try:
            return self._pool.submit(execute, spec).result()
        except BrokenProcessPool:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            raise WorkerDied(
                "the task's process exited abruptly (os._exit, a crash or out of memory)"
            ) from None

    def run(self, tasks, execute, state, retries, on_update) -> None:  # noqa: D102
        try:
            for task in tasks:
                state.running = 1
                on_update(state)
                for attempt in range(retries + 1):
                    try:
                        self._call(execute, task.spec)
                    except Exception as exc:  # a failing run must not stop the others
                        if attempt < retries:
                            state.retried[task.key] = attempt + 1
                            continue
                        state.failed[task.key] = f"{type(exc).__name__}: {first_line(exc)}"
                    else:
                        state.done += 1
                    break
                state.running = 0
                on_update(state)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


class WorkerDied(RuntimeError):
    """The process running a task ended without returning (``LocalBackend(isolate=True)``)."""
