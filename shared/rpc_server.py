"""How every cdserve gRPC service is put together: the server with its interceptors and message
limits, health checking and reflection (so grpcurl and Kubernetes `grpc:` probes work), a Prometheus
endpoint, and waiting for SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from shared.auth import Authenticator
from shared.rpc_interceptors import AuthInterceptor, CallObserver, ObservabilityInterceptor


def new_server(observer: CallObserver, tokens: Mapping[str, str], *, max_message_bytes: int) -> grpc.aio.Server:
    """Errors → statuses and metrics outermost, then authentication; both directions capped."""
    return grpc.aio.server(
        interceptors=[ObservabilityInterceptor(observer), AuthInterceptor(Authenticator(tokens))],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )


def add_health_and_reflection(server: grpc.aio.Server, service_name: str) -> health.aio.HealthServicer:
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [service_name, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
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
