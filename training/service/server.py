"""Builds and starts the training service: grpc.aio with the registry's auth and observability
interceptors (same tokens file format, same error → status mapping), health, reflection, a
Prometheus /metrics endpoint and the background job-state refresher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health

from proto import training_pb2, training_pb2_grpc
from shared.auth import load_tokens
from shared.rpc_server import new_server, start_metrics_http, start_serving
from training.service.config import TrainingServiceConfig
from training.service.launcher import RayJobLauncher
from training.service.metrics import TrainingMetrics
from training.service.service import TrainingService
from training.service.servicer import TrainingServicer
from training.service.store import JobStore

log = logging.getLogger("cdserve.training.service")
SERVICE_NAME = training_pb2.DESCRIPTOR.services_by_name["Training"].full_name
DB_FILE = "jobs.sqlite3"


@dataclass
class TrainingServiceHandle:
    port: int
    metrics_port: int | None
    service: TrainingService
    metrics: TrainingMetrics
    _server: grpc.aio.Server
    _health: health.aio.HealthServicer
    _store: JobStore
    _refresher: asyncio.Task
    _metrics_http: WSGIServer | None
    _grace_s: float

    async def stop(self, grace_s: float | None = None) -> None:
        await self._health.enter_graceful_shutdown()
        self._refresher.cancel()
        await self._server.stop(self._grace_s if grace_s is None else grace_s)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        self._store.close()

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


async def start_training_service(
    config: TrainingServiceConfig, *, tokens: Mapping[str, str] | None = None
) -> TrainingServiceHandle:
    """Serve on `config.host:config.port`; `tokens` (token → tenant) add to `config.tokens_file`."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    all_tokens = {**(load_tokens(config.tokens_file) if config.tokens_file else {}), **(tokens or {})}
    metrics = TrainingMetrics()
    store = JobStore(config.data_dir / DB_FILE)
    launcher = RayJobLauncher(config.ray_address, python=config.job_python, submit_timeout_s=config.submit_timeout_s)
    service = TrainingService(config, store, launcher, metrics)
    server = new_server(metrics, all_tokens, max_message_bytes=config.max_message_bytes)
    training_pb2_grpc.add_TrainingServicer_to_server(TrainingServicer(service), server)
    port, health_servicer = await start_serving(server, SERVICE_NAME, config)
    metrics_http = start_metrics_http(config.metrics_port, config.host, metrics.registry)
    await service.fail_unlaunched()
    refresher = asyncio.get_running_loop().create_task(service.refresh_forever())
    metrics_port = metrics_http.server_port if metrics_http else None
    log.info("training service on port %d (tls %s, metrics %s)", port, config.tls_cert_file is not None, metrics_port)
    return TrainingServiceHandle(
        port=port,
        metrics_port=metrics_port,
        service=service,
        metrics=metrics,
        _server=server,
        _health=health_servicer,
        _store=store,
        _refresher=refresher,
        _metrics_http=metrics_http,
        _grace_s=config.shutdown_grace_s,
    )
