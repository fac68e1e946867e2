"""How every cdserve gRPC service is put together: the server with its interceptors and message
limits, health checking and reflection (so grpcurl and Kubernetes `grpc:` probes work), a Prometheus
endpoint, waiting for SIGTERM/SIGINT, and a graceful stop (`ServiceHandle`)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, start_http_server

from shared.auth import Authenticator
from shared.rpc_interceptors import AuthInterceptor, CallObserver, ObservabilityInterceptor
from shared.rpc_reflection import enable_reflection


def new_server(
    observer: CallObserver, tokens: Mapping[str, str], *, max_message_bytes: int, job_token_key: bytes | None = None
) -> grpc.aio.Server:
    """Errors → statuses and metrics outermost, then authentication; both directions capped."""
    authenticator = Authenticator(tokens, job_token_key=job_token_key)
    return grpc.aio.server(
        interceptors=[ObservabilityInterceptor(observer), AuthInterceptor(authenticator)],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )


def add_health_and_reflection(server: grpc.aio.Server, service_name: str) -> health.aio.HealthServicer:
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection(server, [service_name, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name])
    return health_servicer


class ServerSettings(Protocol):
    """What every service's config says about its server: where it listens, TLS, the /metrics port
    and how long a stop lets calls finish."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def tls_cert_file(self) -> Path | None: ...
    @property
    def tls_key_file(self) -> Path | None: ...
    @property
    def metrics_port(self) -> int | None: ...
    @property
    def shutdown_grace_s(self) -> float: ...


@dataclass
class RunningServer:
    """A started gRPC server with its health service and /metrics endpoint (None when it has none)."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    metrics_http: WSGIServer | None
    grace_s: float


async def start_serving(
    server: grpc.aio.Server, service_name: str, settings: ServerSettings, metrics: CollectorRegistry
) -> RunningServer:
    """Register health and reflection, listen on `host:port` (port 0 picks a free one), over TLS
    when given a PEM certificate chain and its key, start, report SERVING, and serve `metrics` on
    the /metrics port."""
    health_servicer = add_health_and_reflection(server, service_name)
    address = f"{settings.host}:{settings.port}"
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None or key is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())]))
    await server.start()
    for name in ("", service_name):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    metrics_http = start_metrics_http(settings.metrics_port, settings.host, metrics)
    return RunningServer(server, health_servicer, port, metrics_http, settings.shutdown_grace_s)


def start_metrics_http(port: int | None, host: str, registry: CollectorRegistry) -> WSGIServer | None:
    """The /metrics endpoint on `port` (0: any free port; None: none)."""
    if port is None:
        return None
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server


class ServiceHandle:
    """A running service as its start function hands it out: the ports it serves on, and a stop in
    the order its clients need. Each service's handle derives from it and adds what it owns.

    `stop` turns health NOT_SERVING first (probes and load balancers stop sending calls), then
    `_end_streams` ends what would hold calls open past the grace (watches, background tasks), then
    lets in-flight calls finish within the grace, then closes the /metrics endpoint, and only then
    `_close`s what the calls used (stores): no call can reach a closed store.
    """

    def __init__(self, running: RunningServer) -> None:
        self._running = running
        self.port = running.port
        self.metrics_port = running.metrics_http.server_port if running.metrics_http else None

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop within `grace_s` (default: the config's `shutdown_grace_s`)."""
        running = self._running
        await running.health.enter_graceful_shutdown()
        await self._end_streams()
        await running.server.stop(running.grace_s if grace_s is None else grace_s)
        if running.metrics_http is not None:
            running.metrics_http.shutdown()
            running.metrics_http.server_close()
        self._close()

    async def wait_for_termination(self) -> None:
        await self._running.server.wait_for_termination()

    async def _end_streams(self) -> None:
        """End what would keep calls open past the grace; the server still answers."""

    def _close(self) -> None:
        """Close what calls used; the server has stopped."""


async def wait_for_stop_signal() -> None:
    """Return on the first SIGTERM or SIGINT (a graceful stop follows in the caller)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
