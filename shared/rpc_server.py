"""How every cdserve gRPC service is put together: the server with its interceptors and message
limits, health checking and reflection (so grpcurl and Kubernetes `grpc:` probes work), a Prometheus
endpoint, and waiting for SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
from pathlib import Path
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


def add_port(server: grpc.aio.Server, address: str, *, tls_cert_file: Path | None, tls_key_file: Path | None) -> int:
    """Listen on `address` ("host:port"; port 0 picks a free one), over TLS when given a PEM
    certificate chain and its key; returns the port."""
    if tls_cert_file is None or tls_key_file is None:
        return server.add_insecure_port(address)
    credentials = grpc.ssl_server_credentials([(tls_key_file.read_bytes(), tls_cert_file.read_bytes())])
    return server.add_secure_port(address, credentials)


def add_health_and_reflection(server: grpc.aio.Server, service_name: str) -> health.aio.HealthServicer:
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection(server, [service_name, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name])
    return health_servicer


async def mark_serving(health_servicer: health.aio.HealthServicer, service_name: str) -> None:
    for name in ("", service_name):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)


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
