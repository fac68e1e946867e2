"""Builds and starts a registry server: grpc.aio with interceptors, health, reflection, optional
TLS, and a Prometheus /metrics HTTP endpoint. Tests start it in-process; the CLI wraps it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from proto import registry_pb2, registry_pb2_grpc
from serving.registry.blob_files import FileBlobStore
from serving.registry.config import RegistryConfig
from serving.registry.metrics import RegistryMetrics
from serving.registry.service import Registry
from serving.registry.servicer import RegistryServicer
from serving.registry.sqlite_store import SqliteMetadataStore
from shared.auth import load_job_token_key, load_tokens
from shared.errors import InvalidArgument
from shared.rpc_server import RunningServer, ServiceHandle, new_server, start_serving
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


class RegistryHandle(ServiceHandle):
    """A running registry. `stop()` ends watches, lets calls finish within the grace, then closes."""

    def __init__(
        self, running: RunningServer, registry: Registry, metrics: RegistryMetrics, metadata: SqliteMetadataStore
    ) -> None:
        super().__init__(running)
        self.registry = registry
        self.metrics = metrics
        self._metadata = metadata

    async def _end_streams(self) -> None:
        await self.registry.close()

    def _close(self) -> None:
        self._metadata.close()
        log.info("registry.stopped", extra={"fields": {"port": self.port}})


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
    running = await start_serving(server, SERVICE_NAME, config, metrics.registry)
    handle = RegistryHandle(running, registry, metrics, metadata)
    log.info(
        "registry.started",
        extra={
            "fields": {
                "port": handle.port,
                "metrics_port": handle.metrics_port,
                "data_dir": str(config.data_dir),
                "tls": config.tls_cert_file is not None,
                "base_fingerprints": registry.accepted_fingerprints,
                "tenants": sorted(set(all_tokens.values())),
            }
        },
    )
    return handle
