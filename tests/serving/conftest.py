"""Serving fixtures: a real registry (in-process, 127.0.0.1) accepting the tiny base model and one
foreign base, a publisher client, and concept stores over temporary disk tiers."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.basemodels import materialize_tiny
from serving.client import GeneratorClient
from serving.concepts.merger import ConceptMerger
from serving.concepts.observer import CacheStats
from serving.concepts.resolver import ConceptResolver
from serving.concepts.store import ConceptStore, TierBudgets
from serving.config import ServingConfig
from serving.engine import DeltaEngine
from serving.registry.config import RegistryConfig
from shared.artifact import to_bytes
from shared.basemodel import BaseModel, BaseSpec
from shared.merge import RegularizationCache, load_captions
from shared.registry_client import RegistryClient
from tests.registry.conftest import FAST_RETRY, TOKENS, ServerThread, other_base
from tests.support.synthetic import random_concept

OPERATOR_TOKEN = "tok-ops"
MiB = 2**20


@pytest.fixture(scope="session")
def spec(tiny_base: BaseModel) -> BaseSpec:
    return tiny_base.spec


@pytest.fixture(scope="session")
def foreign_spec(spec: BaseSpec) -> BaseSpec:
    return other_base(spec)


@pytest.fixture(scope="session")
def registry(
    tmp_path_factory: pytest.TempPathFactory, spec: BaseSpec, foreign_spec: BaseSpec
) -> Iterator[ServerThread]:
    config = RegistryConfig(data_dir=tmp_path_factory.mktemp("registry"), shutdown_grace_s=0.0, metrics_port=None)
    server = ServerThread(config, [spec, foreign_spec], dict(TOKENS))
    yield server
    server.close()


@pytest.fixture(scope="session")
def operator(registry: ServerThread) -> Iterator[RegistryClient]:
    """A client of the operator tenant: publishes, deletes and reads everything (as replicas do)."""
    with RegistryClient(registry.target, token=OPERATOR_TOKEN, retry=FAST_RETRY) as client:
        yield client


@pytest.fixture(scope="session")
def publish(operator: RegistryClient, spec: BaseSpec) -> Callable[..., Any]:
    """publish("dog", seed=1, base=spec) → ConceptInfo of the new version."""

    def run(concept_id: str, *, seed: int = 0, base: BaseSpec | None = None, **options: Any) -> Any:
        artifact = to_bytes(*random_concept(base or spec, concept_id, seed=seed, **options))
        return operator.publish(artifact).concept

    return run


@pytest.fixture
def make_store(tmp_path: Path, spec: BaseSpec, operator: RegistryClient) -> Callable[..., ConceptStore]:
    """make_store(device_max_bytes=…, host_max_bytes=…, disk_dir=…) with a fresh CacheStats observer."""

    def make(
        *,
        device_max_bytes: int = 64 * MiB,
        host_max_bytes: int = 64 * MiB,
        disk_max_bytes: int = 64 * MiB,
        merged_max_bytes: int = 64 * MiB,
        disk_dir: Path | None = None,
    ) -> ConceptStore:
        budgets = TierBudgets(device_max_bytes, host_max_bytes, disk_max_bytes, merged_max_bytes)
        return ConceptStore(spec, operator, budgets, disk_dir or tmp_path / "disk", observer=CacheStats())

    return make


@pytest.fixture
def resolver(make_store: Callable[..., ConceptStore], tiny_base: BaseModel, tmp_path: Path) -> ConceptResolver:
    """A resolver over a fresh store (operator token towards the registry, as replicas have)."""
    engine = DeltaEngine(tiny_base)
    regularization = RegularizationCache(tmp_path)
    merger = ConceptMerger(engine.prompts, engine.layers, tiny_base.spec.fingerprint, load_captions(), regularization)
    return ConceptResolver(make_store(), merger)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServe:
    """A local Ray with Serve's gRPC proxy; `deploy(name, **config)` runs one more application."""

    grpc_port: int
    metrics_port: int
    base_config: ServingConfig

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def deploy(self, name: str, **updates: Any) -> ServingConfig:
        from serving.app import run_app

        fields = {**self.base_config.model_dump(), "app_name": name, "route_prefix": f"/{name}", **updates}
        config = ServingConfig.model_validate(fields)
        run_app(config)
        return config

    def client(self, app: str, token: str | None = OPERATOR_TOKEN) -> GeneratorClient:
        """A client of `app` calling as the operator (sees every concept) unless told otherwise."""
        return GeneratorClient(self.target, application=app, token=token, timeout_s=120)

    def replica_logs(self, app: str) -> str:
        """What the replicas of `app` have written to their Serve log files so far."""
        import ray

        node = ray._private.worker._global_node
        assert node is not None, "Ray is not running in this process"
        logs = Path(node.get_logs_dir_path()) / "serve"
        return "".join(path.read_text() for path in sorted(logs.glob(f"replica_{app}_*.log")))

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as reply:
            return reply.read().decode()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny seeded pipeline as a diffusers directory: the same weights (and fingerprint) as `tiny_base`."""
    return materialize_tiny(tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture(scope="package")  # Ray is released before other packages' tests start their own
def live_serve(
    registry: ServerThread, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServe]:
    import ray
    from ray import serve

    metrics_port = free_port()
    tokens_file = tmp_path_factory.mktemp("auth") / "tokens.yaml"
    tokens_file.write_text(yaml.safe_dump({"tokens": TOKENS}))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _metrics_export_port=metrics_port,
        log_to_driver=False,
        _system_config={"metrics_report_interval_ms": 500},
    )
    base = ServingConfig(
        grpc_port=free_port(),
        http_port=free_port(),
        base_model={"path": model_dir},
        registry={"address": registry.target, "token": OPERATOR_TOKEN, "watch_heartbeat_s": 1},
        auth={"tokens_file": tokens_file, "allow_anonymous": True},
        cache={"disk_dir": None, "reg_cache_dir": tmp_path_factory.mktemp("creg")},
        ray_actor_options={"num_cpus": 0.2, "num_gpus": "auto"},
    )
    yield LiveServe(base.grpc_port, metrics_port, base)
    serve.shutdown()
    ray.shutdown()
