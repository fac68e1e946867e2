"""The whole system on one machine: a concept registry, a local Ray with the Serve application
(Generator over gRPC) and the training service (jobs as Ray Jobs), from one ServingConfig.

Used by `cdserve up` and the demo. The registry and the training service each run as their own
process, started and restarted by a `Supervisor` (`cdserve registry`, `cdserve training serve`,
from config files written into the data folder); Ray runs its own processes, started by this one.
Our services and Serve's gRPC and HTTP proxies bind `host` (127.0.0.1 unless told otherwise); Ray's
dashboard, which accepts jobs, always stays on 127.0.0.1. Ray's own other ports (its metrics export,
its internal RPC) cannot be narrowed in Ray 2.60: it turns a loopback node address into the
machine's address (`services.resolve_ip_for_localhost`), so a firewall must guard them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cli import serve_grpc_host
from cli.credentials import StackCredentials
from cli.processes import kill_processes_mentioning
from cli.supervisor import ServiceSpec, Supervisor
from serving.config import ServingConfig
from serving.http.config import HttpConfig
from shared.spec import BaseSpec

logger = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
SHUTDOWN_GRACE_S = 2.0
"""How long a service's stop lets calls in flight finish: short, a local stack stops when told."""


@dataclass(frozen=True)
class Endpoints:
    generator: str
    application: str
    registry: str
    training: str
    token: str
    """The operator token (sees and may do everything); each tenant uses its own from --tokens."""
    tokens: str
    metrics: tuple[str, ...]
    base_model: Path
    fingerprint: str
    playground: str
    """The browser playground, and the HTTP/JSON API under it at v1/ (OpenAPI at openapi.json)."""

    def describe(self) -> str:
        return (
            f"  playground (browser, HTTP):    {self.playground}\n"
            f"  generator (gRPC, Serve proxy): {self.generator}  application={self.application}\n"
            f"  registry  (gRPC):              {self.registry}\n"
            f"  training  (gRPC):              {self.training}\n"
            f"  tokens:                        {self.tokens}\n"
            + "".join(f"  metrics   (Prometheus):        {url}\n" for url in self.metrics)
            + f"  base model:                    {self.base_model} (fingerprint {self.fingerprint})"
        )


@dataclass(frozen=True)
class Ports:
    """Fixed for the life of the stack, so that a restarted service is found where it was."""

    registry: int
    registry_metrics: int
    training: int
    training_metrics: int


class LocalStack:
    """Start with `start()` (or `with LocalStack(...) as endpoints:`); `stop()` undoes everything.

    `tokens_file`: the tenants' tokens (`tokens: {<token>: <tenant>}`); the stack adds its own
    operator token, made once and kept in the data folder. `image_roots`: server folders training
    jobs may name images in (else images come by upload only)."""

    def __init__(
        self,
        config: ServingConfig,
        data_dir: Path,
        *,
        num_cpus: int | None = None,
        host: str = LOOPBACK,
        tokens_file: Path | None = None,
        image_roots: Sequence[Path] = (),
        training_port: int = 0,
    ) -> None:
        self._config = config
        self._data = data_dir.resolve()
        self._num_cpus = num_cpus
        self._host = host
        self._tokens_file = tokens_file.resolve() if tokens_file else None
        self._image_roots = [Path(root).resolve() for root in image_roots]
        self._training_port = training_port
        self._ray_temp_dir: str | None = None
        self.supervisor: Supervisor | None = None

    def __enter__(self) -> Endpoints:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Endpoints:
        from serving.app import run_app
        from serving.basemodels import default_model_dir
        from serving.http.app import run_http_app
        from serving.registry.server import load_base_spec
        from shared.basemodel import load_base_model
        from shared.spec import SPEC_FILE

        self._data.mkdir(parents=True, exist_ok=True)
        credentials = StackCredentials.load(self._data / "secrets", self._tokens_file)
        model_dir = Path(self._config.base_model.path or default_model_dir()).resolve()
        spec_file = model_dir / SPEC_FILE
        spec = load_base_spec(spec_file) if spec_file.exists() else load_base_model(model_dir).spec
        registry_port = int(self._config.registry.address.rpartition(":")[2])
        ports = Ports(registry_port or free_port(), free_port(), self._training_port or free_port(), free_port())
        registry = f"{LOOPBACK}:{ports.registry}"
        config = self._config.model_validate(
            {
                **self._config.model_dump(),
                "base_model": {**self._config.base_model.model_dump(), "path": model_dir},
                "registry": {
                    **self._config.registry.model_dump(),
                    "address": registry,
                    "token": None,
                    "token_file": credentials.operator_token_file,
                },
                "auth": {**self._config.auth.model_dump(), "tokens_file": credentials.tokens_file},
                "cache": {
                    **self._config.cache.model_dump(),
                    "disk_dir": self._config.cache.disk_dir or self._data / "concepts",
                    "reg_cache_dir": self._config.cache.reg_cache_dir or self._data / "merge",
                },
            }
        )

        dashboard = self._start_ray(config)
        services = self.services(model_dir, spec, ports, credentials, dashboard)
        self.supervisor = Supervisor(services, log_dir=self._data / "logs")
        self.supervisor.start()
        run_app(config, host=self._host)
        shown = self._host if self._host != "0.0.0.0" else socket.gethostname()
        playground = run_http_app(config, self._http_config(model_dir, ports), url_host=shown)
        return Endpoints(
            generator=f"{shown}:{config.grpc_port}",
            application=config.app_name,
            registry=f"{shown}:{ports.registry}",
            training=f"{shown}:{ports.training}",
            token=credentials.operator_token,
            tokens=(
                f"{self._tokens_file} (+ operator token in {credentials.operator_token_file})"
                if self._tokens_file
                else f"operator {credentials.operator_token} (kept in {credentials.operator_token_file})"
            ),
            metrics=(
                f"http://{shown}:{config.metrics_export_port}/metrics (Ray, Serve, replicas)",
                f"http://{shown}:{ports.registry_metrics}/metrics (registry)",
                f"http://{shown}:{ports.training_metrics}/metrics (training)",
            ),
            base_model=model_dir,
            fingerprint=spec.fingerprint,
            playground=playground,
        )

    def _http_config(self, model_dir: Path, ports: Ports) -> HttpConfig:
        """The HTTP face: trainings go to this stack's training service; on the embedded model the
        playground fills in the toy world's recipe."""
        from serving.basemodels import default_model_dir
        from training.world.recipe import WORLD_RECIPE

        embedded = model_dir == Path(default_model_dir()).resolve()
        return HttpConfig(
            training_address=f"{LOOPBACK}:{ports.training}",
            preview={"cache_dir": self._data / "previews"},
            training_recipe=dict(WORLD_RECIPE) if embedded else {},
        )

    def services(
        self, model_dir: Path, spec: BaseSpec, ports: Ports, credentials: StackCredentials, dashboard: str
    ) -> list[ServiceSpec]:
        """The supervised services, in start order; each reads a config file written here. (The
        HTTP face joins them here as one more service.)"""
        run = self._data / "run"
        run.mkdir(parents=True, exist_ok=True)
        spec_file = run / "base_spec.json"
        spec_file.write_text(spec.to_json())
        registry = _write_config(
            run / "registry.yaml",
            {
                "data_dir": self._data / "registry",
                "host": self._host,
                "port": ports.registry,
                "metrics_port": ports.registry_metrics,
                "tokens_file": credentials.tokens_file,
                "job_token_key_file": credentials.job_token_key_file,
                "base_spec_files": [spec_file],
                "shutdown_grace_s": SHUTDOWN_GRACE_S,
            },
        )
        training = _write_config(
            run / "training.yaml",
            {
                "data_dir": self._data / "training",
                "base_model": model_dir,
                "host": self._host,
                "port": ports.training,
                "metrics_port": ports.training_metrics,
                "ray_address": dashboard,
                "registry": f"{LOOPBACK}:{ports.registry}",
                "tokens_file": credentials.tokens_file,
                "job_token_key_file": credentials.job_token_key_file,
                "allowed_image_roots": self._image_roots,
                "shutdown_grace_s": SHUTDOWN_GRACE_S,
            },
        )
        cdserve = [sys.executable, "-m", "cli.child", str(os.getpid())]
        return [
            ServiceSpec(
                "registry",
                [*cdserve, "registry", "--config", str(registry)],
                ready=lambda: grpc_serving(f"{LOOPBACK}:{ports.registry}"),
            ),
            ServiceSpec(
                "training",
                [*cdserve, "training", "serve", "--config", str(training)],
                ready=lambda: grpc_serving(f"{LOOPBACK}:{ports.training}"),
            ),
        ]

    def _start_ray(self, config: ServingConfig) -> str:
        """Start Ray; returns its dashboard's URL. A private temp dir: Ray Jobs' drivers find this
        cluster through it (not another one on the machine), and `stop()` knows which processes
        are this stack's."""
        import ray

        self._ray_temp_dir = tempfile.mkdtemp(prefix="cdserve-ray-", dir="/tmp")  # short: Ray's sockets live in it
        # The dashboard hosts Ray's job-submission API, which the training service uses.
        context = _init_ray(
            num_cpus=self._num_cpus,
            include_dashboard=True,
            dashboard_host=LOOPBACK,
            log_to_driver=False,
            _metrics_export_port=config.metrics_export_port,
            _temp_dir=self._ray_temp_dir,
            runtime_env=serve_grpc_host.runtime_env(self._host),
        )
        ray._private.utils.write_ray_address(context.address_info["gcs_address"], self._ray_temp_dir)
        return f"http://{context.dashboard_url}"

    def stop(self) -> None:
        """Stop the services, then Ray (Serve with it: the cluster is this stack's alone), then any
        process left from this stack's Ray (e.g. a training job's driver): what `ray stop` does,
        for this cluster only."""
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
        if self._ray_temp_dir is None:
            return
        import ray

        if ray.is_initialized():
            ray.shutdown()
        kill_processes_mentioning(self._ray_temp_dir)
        shutil.rmtree(self._ray_temp_dir, ignore_errors=True)
        self._ray_temp_dir = None


def grpc_serving(target: str, timeout_s: float = 1.0) -> bool:
    """Whether the gRPC server at `target` answers its health check with SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def _write_config(path: Path, fields: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(json.loads(json.dumps(fields, default=str))))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def _init_ray(**options: Any) -> Any:
    """`ray.init`, once more if the dashboard's start loses a race with its own log file: Ray 2.60
    raised "Failed to read dashboard.err" in 1 of ~10 demo runs here, and a second start succeeds."""
    import ray

    try:
        return ray.init(**options)
    except Exception as error:
        if "dashboard" not in str(error):
            raise
        logger.warning("ray.init failed (%s); starting Ray once more", error)
        ray.shutdown()
        return ray.init(**options)
