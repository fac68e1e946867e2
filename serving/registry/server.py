"""Builds and starts a registry server: grpc.aio with interceptors, health, reflection, optional
TLS, and a Prometheus /metrics HTTP endpoint. Tests start it in-process; the CLI wraps it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health

from proto import registry_pb2, registry_pb2_grpc
from serving.registry.blob_files import FileBlobStore
from serving.registry.config import RegistryConfig
from serving.registry.metrics import RegistryMetrics
from serving.registry.service import Registry
from serving.registry.servicer import RegistryServicer
from serving.registry.sqlite_store import SqliteMetadataStore
from shared.auth import load_job_token_key, load_tokens
from shared.errors import InvalidArgument
from shared.rpc_server import new_server, start_metrics_http, start_serving
from shared.spec import BaseSpec

log = logging.getLogger("cdserve.registry")

METADATA_FILE = "registry.sqlite3"
SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name


def load_base_spec(path: str | Path) -> BaseSpec:
    try:
        return BaseSpec.from_json(Path(path).read_text())
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidArgument(
            f"base spec {str(path)!r} is unreadable or not a BaseSpec JSON ({e})", field="base_spec"
        ) from e


@dataclass
class RegistryHandle:
    """A running registry. `stop()` ends watches, lets calls finish within the grace, then closes."""

    port: int
    metrics_port: int | None
    registry: Registry
    metrics: RegistryMetrics
    _server: grpc.aio.Server
    _health: health.aio.HealthServicer
    _metadata: SqliteMetadataStore
    _metrics_http: WSGIServer | None
    _grace_s: float

    async def stop(self, grace_s: float | None = None) -> None:
        await self._health.enter_graceful_shutdown()
        await self.registry.close()
        await self._server.stop(self._grace_s if grace_s is None else grace_s)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        self._metadata.close()
        log.info("registry.stopped", extra={"fields": {"port": self.port}})

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


async def start_registry(
    config: RegistryConfig,
    *,
    base_specs: Sequence[BaseSpec] = (),
    tokens: Mapping[str, str] | None = None,
) -> RegistryHandle:
    """Open the stores in `config.data_dir` (recovering from a crash), then serve.

    `base_specs` and `tokens` (token → tenant) add to `config.base_spec_files` and `config.tokens_file`.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    specs = [*base_specs, *(load_base_spec(path) for path in config.base_spec_files)]
    all_tokens = {**(load_tokens(config.tokens_file) if config.tokens_file else {}), **(tokens or {})}
    metrics = RegistryMetrics()
    metadata = SqliteMetadataStore(config.data_dir / METADATA_FILE)
    registry = Registry(metadata, FileBlobStore(config.data_dir), config=config, base_specs=specs, metrics=metrics)

    job_key = load_job_token_key(config.job_token_key_file) if config.job_token_key_file else None
    server = new_server(metrics, all_tokens, max_message_bytes=config.max_message_bytes, job_token_key=job_key)
    registry_pb2_grpc.add_RegistryServicer_to_server(RegistryServicer(registry), server)
    port, health_servicer = await start_serving(server, SERVICE_NAME, config)
    metrics_http = start_metrics_http(config.metrics_port, config.host, metrics.registry)
    handle = RegistryHandle(
        port=port,
        metrics_port=metrics_http.server_port if metrics_http else None,
        registry=registry,
        metrics=metrics,
        _server=server,
        _health=health_servicer,
        _metadata=metadata,
        _metrics_http=metrics_http,
        _grace_s=config.shutdown_grace_s,
    )
    log.info(
        "registry.started",
        extra={
            "fields": {
                "port": port,
                "metrics_port": handle.metrics_port,
                "data_dir": str(config.data_dir),
                "tls": config.tls_cert_file is not None,
                "base_fingerprints": registry.accepted_fingerprints,
                "tenants": sorted(set(all_tokens.values())),
            }
        },
    )
    return handle
