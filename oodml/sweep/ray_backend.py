"""Ray backend: one Ray task per sweep task, each asking for the configured CPUs and GPUs.

Retries are driven from here rather than by Ray's own ``max_retries`` so that a task that
raises and a task whose worker process died are handled alike, counted, and reported.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from oodml.errors import ConfigError, first_line
from oodml.sweep.engine import SweepState, Task

CONNECT_TIMEOUT_S = 5.0
"""How long ``--address HOST:PORT`` may take to accept a TCP connection before the sweep fails
(Ray itself would retry for minutes)."""

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
        probe_address(self.address)
        try:
            ray.init(address=self.address, **kwargs)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError, SystemExit) as exc:
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


def probe_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout`` seconds (one ConfigError line) unless ``address``
    (``HOST:PORT`` or ``ray://HOST:PORT``) accepts a TCP connection. ``auto`` and ``local``
    are Ray's own lookups and are not probed."""
    if address in ("auto", "local"):
        return
    hostport = address.removeprefix("ray://")
    host, sep, port_text = hostport.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(
            f"--address {address!r} is not HOST:PORT (for example 10.0.0.5:6379 or "
            "ray://10.0.0.5:10001); use the address `ray start --head` printed"
        )
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(
            f"cannot connect to the Ray cluster at --address {address}: {why} "
            f"(waited at most {timeout:g} s); start it with `ray start --head` or check the "
            "address"
        ) from None


def _error_line(exc: BaseException) -> str:
    """The root error of a Ray failure on one line (Ray wraps it with a long traceback; the
    cause, when Ray kept it, is the task's own exception)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    return f"{type(exc).__name__}: {first_line(exc)}"[:500]
