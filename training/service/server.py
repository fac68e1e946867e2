"""Builds and starts the training service: grpc.aio with the registry's auth and observability
interceptors (same tokens file format, same error → status mapping), health, reflection, a
Prometheus /metrics endpoint and the background job-state refresher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from proto import training_pb2, training_pb2_grpc
from shared.auth import load_tokens
from shared.rpc_server import RunningServer, ServiceHandle, new_server, start_serving
from training.service.config import TrainingServiceConfig
from training.service.launcher import RayJobLauncher
from training.service.metrics import TrainingMetrics
from training.service.service import TrainingService
from training.service.servicer import TrainingServicer
from training.service.store import JobStore

log = logging.getLogger("cdserve.training.service")
SERVICE_NAME = training_pb2.DESCRIPTOR.services_by_name["Training"].full_name
DB_FILE = "jobs.sqlite3"


class TrainingServiceHandle(ServiceHandle):
    """A running training service. `stop()` ends the job-state refresher, lets calls finish within
    the grace, then closes the job store."""

    def __init__(
        self,
        running: RunningServer,
        service: TrainingService,
        metrics: TrainingMetrics,
        store: JobStore,
        refresher: asyncio.Task,
    ) -> None:
        super().__init__(running)
        self.service = service
        self.metrics = metrics
        self._store = store
        self._refresher = refresher

    async def _end_streams(self) -> None:
        self._refresher.cancel()

    def _close(self) -> None:
        self._store.close()


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
    running = await start_serving(server, SERVICE_NAME, config, metrics.registry)
    await service.fail_unlaunched()
    refresher = asyncio.get_running_loop().create_task(service.refresh_forever())
    handle = TrainingServiceHandle(running, service, metrics, store, refresher)
    log.info(
        "training service on port %d (tls %s, metrics %s)",
        handle.port,
        config.tls_cert_file is not None,
        handle.metrics_port,
    )
    return handle
