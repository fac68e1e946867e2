"""The whole system on one machine: a concept registry, a local Ray with the Serve application
(Generator over gRPC) and the training service (jobs as Ray Jobs), from one ServingConfig.

Used by `cdserve up` and the demo. The registry and training service run in this process on one
asyncio loop in a background thread; Ray runs its own processes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.config import ServingConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    generator: str
    application: str
    registry: str
    training: str
    token: str
    metrics: tuple[str, ...]
    base_model: Path
    fingerprint: str

    def describe(self) -> str:
        return (
            f"  generator (gRPC, Serve proxy): {self.generator}  application={self.application}\n"
            f"  registry  (gRPC):              {self.registry}\n"
            f"  training  (gRPC):              {self.training}\n"
            f"  operator token:                {self.token}\n"
            + "".join(f"  metrics   (Prometheus):        {url}\n" for url in self.metrics)
            + f"  base model:                    {self.base_model} (fingerprint {self.fingerprint})"
        )


class LocalStack:
    """Start with `start()` (or `with LocalStack(...) as endpoints:`); `stop()` undoes everything."""

    def __init__(self, config: ServingConfig, data_dir: Path, *, num_cpus: int | None = None) -> None:
        self._config = config
        self._data = data_dir.resolve()
        self._num_cpus = num_cpus
        self._loop = asyncio.new_event_loop()
        self._handles: list[Any] = []
        self._ray_started = False

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _await(self, coroutine: Any, timeout_s: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=timeout_s)

    def start(self) -> Endpoints:
        from serving.app import run_app
        from serving.basemodels import default_model_dir
        from serving.registry.config import RegistryConfig
        from serving.registry.server import load_base_spec, start_registry
        from shared.basemodel import load_base_model
        from shared.spec import SPEC_FILE
        from training.service.config import TrainingServiceConfig
        from training.service.server import start_training_service

        threading.Thread(target=self._loop.run_forever, name="cdserve-stack", daemon=True).start()
        config = self._config
        model_dir = Path(config.base_model.path or default_model_dir()).resolve()
        token = config.registry.token or secrets.token_urlsafe(24)
        spec_file = model_dir / SPEC_FILE
        spec = load_base_spec(spec_file) if spec_file.exists() else load_base_model(model_dir).spec

        host, _, port = config.registry.address.rpartition(":")
        registry = self._await(start_registry(
            RegistryConfig(data_dir=self._data / "registry", host=host, port=int(port), metrics_port=0),
            base_specs=[spec], tokens={token: "*"},
        ))  # fmt: skip
        self._handles.append(registry)
        config = config.model_validate({
            **config.model_dump(),
            "base_model": {**config.base_model.model_dump(), "path": model_dir},
            "registry": {**config.registry.model_dump(), "token": token},
            "cache": {**config.cache.model_dump(), "disk_dir": config.cache.disk_dir or self._data / "concepts",
                      "reg_cache_dir": config.cache.reg_cache_dir or self._data / "merge"},
        })  # fmt: skip

        # The dashboard hosts Ray's job-submission API, which the training service uses.
        _init_ray(num_cpus=self._num_cpus, include_dashboard=True, log_to_driver=False,
                  _metrics_export_port=config.metrics_export_port)  # fmt: skip
        self._ray_started = True
        run_app(config)
        training = self._await(start_training_service(
            TrainingServiceConfig(data_dir=self._data / "training", base_model=str(model_dir),
                                  registry=config.registry.address),
            tokens={token: "*"},
        ))  # fmt: skip
        self._handles.append(training)
        return Endpoints(
            generator=f"127.0.0.1:{config.grpc_port}",
            application=config.app_name,
            registry=config.registry.address,
            training=f"127.0.0.1:{training.port}",
            token=token,
            metrics=(
                f"http://127.0.0.1:{config.metrics_export_port}/metrics (Ray, Serve, replicas)",
                f"http://127.0.0.1:{registry.metrics_port}/metrics (registry)",
                f"http://127.0.0.1:{training.metrics_port}/metrics (training)",
            ),
            base_model=model_dir,
            fingerprint=spec.fingerprint,
        )

    def stop(self) -> None:
        if self._ray_started:
            import ray
            from ray import serve

            serve.shutdown()
            ray.shutdown()
            self._ray_started = False
        for handle in reversed(self._handles):
            self._await(handle.stop(), timeout_s=30)
        self._handles.clear()
        self._loop.call_soon_threadsafe(self._loop.stop)


def _init_ray(**options: object) -> None:
    """`ray.init`, once more if the dashboard's start loses a race with its own log file: Ray 2.60
    raised "Failed to read dashboard.err" in 1 of ~10 demo runs here, and a second start succeeds."""
    import ray

    try:
        ray.init(**options)
    except Exception as error:
        if "dashboard" not in str(error):
            raise
        logger.warning("ray.init failed (%s); starting Ray once more", error)
        ray.shutdown()
        ray.init(**options)
