"""A replica core, without Ray: the merge statistics are ready before the first request, and a
request's queue time starts once its concepts are loaded and merged."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proto import generator_pb2
from serving.client import GeneratorClient
from serving.config import ServingConfig
from serving.replica import Replica, build_replica
from shared.auth import OPERATOR_TENANT, Caller
from tests.registry.conftest import ServerThread
from tests.serving.conftest import OPERATOR_TOKEN

Publish = Callable[..., Any]


@pytest.fixture(scope="module")
def reg_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("creg")


@pytest.fixture(scope="module")
def replica(
    registry: ServerThread, model_dir: Path, reg_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replica]:
    config = ServingConfig(
        base_model={"path": model_dir},
        registry={"address": registry.target, "token": OPERATOR_TOKEN},
        cache={"disk_dir": tmp_path_factory.mktemp("concepts"), "reg_cache_dir": reg_cache_dir},
    )
    replica = build_replica(config, replica="timing")
    yield replica
    replica.close()


def test_the_regularization_statistics_exist_before_the_first_request(replica: Replica, reg_cache_dir: Path) -> None:
    assert replica.stats.merges == 0 and replica.stats.hits == {}
    assert len(list(reg_cache_dir.glob("creg-*.safetensors"))) == 1


def test_queue_time_excludes_concept_loading_and_merging(replica: Replica, publish: Publish) -> None:
    publish("queue-a", seed=41), publish("queue-b", seed=42)
    message = GeneratorClient.request(
        "photo of a <queue-a> dog and a <queue-b> cat", concepts=["queue-a", "queue-b"], steps=2, seed=1
    )
    before = time.perf_counter()
    pending = replica.core.prepare(message, Caller(tenant=OPERATOR_TENANT))
    prepared = time.perf_counter()
    prepare_ms = (prepared - before) * 1000.0  # the fetches and the merge: not queue time
    time.sleep(0.05)  # waiting for a batch: this, and only this, is queue time
    waited_ms = (time.perf_counter() - prepared) * 1000.0
    (response,) = replica.core.run_batch([pending])
    assert isinstance(response, generator_pb2.GenerateResponse)
    timings = response.timings
    assert timings.concept_load_ms > 0 and timings.merge_ms > 0
    assert timings.concept_load_ms + timings.merge_ms <= prepare_ms
    assert waited_ms <= timings.queue_ms < waited_ms + prepare_ms
    assert timings.total_ms >= timings.queue_ms + timings.concept_load_ms + timings.merge_ms
