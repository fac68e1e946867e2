"""Serving fixtures: a real registry (in-process, 127.0.0.1) accepting the tiny base model and one
foreign base, a publisher client, and concept stores over temporary disk tiers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.concepts.observer import CacheStats
from serving.concepts.store import ConceptStore, TierBudgets
from serving.registry.config import RegistryConfig
from shared.artifact import to_bytes
from shared.basemodel import BaseModel, BaseSpec
from shared.registry_client import RegistryClient
from shared.synthetic import random_concept
from tests.registry.conftest import FAST_RETRY, TOKENS, ServerThread, other_base

OPERATOR_TOKEN = "tok-ops"
MiB = 2**20


@pytest.fixture(scope="session")
def spec(tiny_base: BaseModel) -> BaseSpec:
    return tiny_base.spec


@pytest.fixture(scope="session")
def foreign_spec(spec: BaseSpec) -> BaseSpec:
    return other_base(spec)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, spec: BaseSpec, foreign_spec: BaseSpec) -> Iterator[ServerThread]:
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
        *, device_max_bytes: int = 64 * MiB, host_max_bytes: int = 64 * MiB, disk_max_bytes: int = 64 * MiB,
        merged_max_bytes: int = 64 * MiB, disk_dir: Path | None = None,
    ) -> ConceptStore:  # fmt: skip
        budgets = TierBudgets(device_max_bytes, host_max_bytes, disk_max_bytes, merged_max_bytes)
        return ConceptStore(spec, operator, budgets, disk_dir or tmp_path / "disk", observer=CacheStats())

    return make
