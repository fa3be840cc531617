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
HANDSHAKE_TIMEOUT_S = 10.0
"""How long the server at ``--address`` may take to answer the Ray handshake (HTTP/2, then one
gRPC call of Ray's) once it accepted the connection."""
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
"""The HTTP/2 connection preface and an empty SETTINGS frame: what a gRPC client sends first."""
RAY_METHODS = {
    "gcs": ("/ray.rpc.NodeInfoGcsService/GetClusterId", b""),
    "client": ("/ray.rpc.RayletDriver/ClusterInfo", b"\x08\x06"),
}
"""A call only a Ray server implements, and its serialized request, per kind of address
(HOST:PORT is the GCS: an empty GetClusterIdRequest; ray:// the Ray client server: the
ClusterInfoRequest of type PING = 6 that Ray's own client sends to connect)."""

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


def probe_address(
    address: str, timeout: float = CONNECT_TIMEOUT_S, handshake: float = HANDSHAKE_TIMEOUT_S
) -> None:
    """Fail in one ConfigError line unless ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``)
    accepts a TCP connection within ``timeout`` seconds and then answers a Ray handshake
    within ``handshake`` seconds: the HTTP/2 preface every gRPC server answers, then one call
    only Ray's GCS (or, for ``ray://``, Ray's client server) implements. A web server or any
    other service fails at once or at the deadline, instead of ray.init retrying for minutes.
    ``auto`` and ``local`` are Ray's own lookups and are not probed."""
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
        with socket.create_connection((host, int(port_text)), timeout=timeout) as sock:
            why = _http2_answer(sock, handshake)
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(
            f"cannot connect to the Ray cluster at --address {address}: {why} "
            f"(waited at most {timeout:g} s); start it with `ray start --head` or check the "
            "address"
        ) from None
    if why is None:
        kind = "client" if address.startswith("ray://") else "gcs"
        why = _ray_call(hostport, *RAY_METHODS[kind], handshake)
    if why is not None:
        raise ConfigError(
            f"--address {address} is not a Ray cluster: {why}; give the address `ray start "
            "--head` printed (HOST:6379, or ray://HOST:10001)"
        )


def _http2_answer(sock: socket.socket, timeout: float) -> str | None:
    """Why the server on ``sock`` is not a gRPC (HTTP/2) server, or None if it answers the
    connection preface with a SETTINGS frame as HTTP/2 requires (RFC 9113, 3.4)."""
    sock.settimeout(timeout)
    try:
        sock.sendall(HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = sock.recv(9 - len(head))
            if not chunk:
                break
            head += chunk
    except TimeoutError:
        return f"no answer to the gRPC handshake within {timeout:g} s"
    except OSError as exc:
        return f"the connection failed during the gRPC handshake ({exc.strerror or exc})"
    if len(head) == 9 and head[3] == 4:
        return None
    if head.startswith((b"HTTP/", b"<")):
        return "it answers HTTP/1 or HTML (a web server?), not Ray's gRPC"
    if not head:
        return "it closed the connection at the gRPC handshake"
    return f"it answers {head[:9]!r}, not Ray's gRPC"


def _ray_call(target: str, method: str, request: bytes, timeout: float) -> str | None:
    """Why the gRPC server at ``target`` is not Ray's, or None if it implements ``method``.

    Any answer but UNIMPLEMENTED (no such service) or a transport failure shows the service
    exists, so the server is Ray's (an error status such as UNAUTHENTICATED, from a cluster
    with token authentication, still proves it)."""
    try:
        import grpc
    except ImportError:  # Ray without grpcio does not exist; nothing more to check
        return None
    channel = grpc.insecure_channel(target)
    try:
        call = channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        call(request, timeout=timeout)
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else None
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return f"its gRPC server does not implement {method}"
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return f"no answer to {method} within {timeout:g} s ({code.name})"
    finally:
        channel.close()
    return None


def _error_line(exc: BaseException) -> str:
    """The root error of a Ray failure on one line (Ray wraps it with a long traceback; the
    cause, when Ray kept it, is the task's own exception)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    return f"{type(exc).__name__}: {first_line(exc)}"[:500]
