"""Ray backend: one Ray task per sweep task, each asking for the configured CPUs and GPUs.

Retries are driven from here rather than by Ray's own ``max_retries`` so that a task that
raises and a task whose worker process died are handled alike, counted, and reported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from oodml.errors import ConfigError, first_line
from oodml.sweep.engine import SweepState, Task

INSTALL_HINT = "Ray is not installed: pip install 'oodml[dist]' (or pip install 'ray[default]')"


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(f"the ray backend needs Ray. {INSTALL_HINT}") from None
    return ray


class RayBackend:
    """Submit tasks to a Ray cluster (``address``) or to a local Ray started for the sweep."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        cpus_per_run: float = 1.0,
        gpus_per_run: float = 0.0,
        num_cpus: int | None = None,
    ) -> None:
        self.address = address
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.num_cpus = num_cpus

    def _init(self, ray) -> bool:
        """Connect or start Ray; returns whether we started it (and so must shut it down)."""
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if not self.address:
            ray.init(num_cpus=self.num_cpus or os.cpu_count() or 1, **kwargs)
            return True
        try:
            ray.init(address=self.address, **kwargs)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"cannot connect to the Ray cluster at address {self.address}: "
                f"{first_line(exc)}; start it with `ray start --head` or check the address"
            ) from None
        return True

    def _slots(self, ray) -> int:
        res = ray.cluster_resources()
        slots = int(res.get("CPU", 1) // max(self.cpus_per_run, 1e-9))
        if self.gpus_per_run > 0:
            slots = min(slots, int(res.get("GPU", 0) // self.gpus_per_run))
        return max(1, slots)

    def run(
        self,
        tasks: list[Task],
        execute: Callable[[Any], Any],
        state: SweepState,
        retries: int,
        on_update: Callable[[SweepState], None],
    ) -> None:
        ray = import_ray()
        started = self._init(ray)
        try:
            if self.gpus_per_run > 0 and ray.cluster_resources().get("GPU", 0) < self.gpus_per_run:
                raise ConfigError(
                    f"gpus_per_run={self.gpus_per_run} but the Ray cluster has "
                    f"{ray.cluster_resources().get('GPU', 0)} GPU(s); use gpus_per_run=0"
                )
            remote = ray.remote(
                num_cpus=self.cpus_per_run,
                num_gpus=self.gpus_per_run,
                max_retries=0,
                retry_exceptions=False,
            )(execute)
            slots = self._slots(ray)
            attempts: dict[str, int] = {}
            inflight: dict[Any, Task] = {}
            for task in tasks:
                attempts[task.key] = 0
                inflight[remote.remote(task.spec)] = task
            state.running = min(slots, len(inflight))
            on_update(state)
            while inflight:
                ready, _ = ray.wait(list(inflight), num_returns=1)
                ref = ready[0]
                task = inflight.pop(ref)
                try:
                    ray.get(ref)
                except Exception as exc:  # task raised, or its worker died
                    attempts[task.key] += 1
                    if attempts[task.key] <= retries:
                        state.retried[task.key] = attempts[task.key]
                        inflight[remote.remote(task.spec)] = task
                    else:
                        state.failed[task.key] = _error_line(exc)
                else:
                    state.done += 1
                state.running = min(slots, len(inflight))
                on_update(state)
        finally:
            if started:
                ray.shutdown()


def _error_line(exc: BaseException) -> str:
    """The root error of a Ray failure on one line (Ray wraps it with a long traceback; the
    cause, when Ray kept it, is the task's own exception)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    return f"{type(exc).__name__}: {first_line(exc)}"[:500]
