"""How every cdserve gRPC service is put together: the server with its interceptors and message
limits, health checking and reflection (so grpcurl and Kubernetes `grpc:` probes work), a Prometheus
endpoint, and waiting for SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
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


class Listening(Protocol):
    """Where a service listens: the fields its config shares with every other service's."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def tls_cert_file(self) -> Path | None: ...
    @property
    def tls_key_file(self) -> Path | None: ...


async def start_serving(
    server: grpc.aio.Server, service_name: str, listening: Listening
) -> tuple[int, health.aio.HealthServicer]:
    """Register health and reflection, listen on `host:port` (port 0 picks a free one), over TLS
    when given a PEM certificate chain and its key, start, and report SERVING. Returns the port and
    the health servicer (a graceful shutdown turns it NOT_SERVING first)."""
    health_servicer = add_health_and_reflection(server, service_name)
    address = f"{listening.host}:{listening.port}"
    cert, key = listening.tls_cert_file, listening.tls_key_file
    if cert is None or key is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())]))
    await server.start()
    for name in ("", service_name):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return port, health_servicer


def start_metrics_http(port: int | None, host: str, registry: CollectorRegistry) -> WSGIServer | None:
    """The /metrics endpoint on `port` (0: any free port; None: none)."""
    if port is None:
        return None
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server


async def wait_for_stop_signal() -> None:
    """Return on the first SIGTERM or SIGINT (a graceful stop follows in the caller)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
