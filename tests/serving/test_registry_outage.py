"""A replica whose registry is killed (SIGKILL, its own process) keeps serving the concepts it holds,
answers UNAVAILABLE for the ones it would have to fetch, and picks up the registry's events again
once it is back on the same port: a version published after the restart is served without a
replica restart.

The replica is the real one (`build_replica`: base model, store, watcher, registry channel) in this
process, without Ray: Serve adds nothing to this path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proto import generator_pb2
from serving.config import ServingConfig
from serving.replica import Replica, build_replica
from shared.artifact import to_bytes
from shared.auth import OPERATOR_TENANT, Caller
from shared.basemodel import BaseSpec
from shared.errors import Unavailable
from tests.registry.conftest import TOKENS
from tests.registry.test_registry_crash import RegistryProcess
from tests.serving.conftest import OPERATOR_TOKEN, free_port
from tests.support.synthetic import random_concept

OPERATOR = Caller(OPERATOR_TENANT)


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def spec_file(tmp_path: Path, spec: BaseSpec) -> Path:
    path = tmp_path / "cdserve_base_spec.json"
    path.write_text(spec.to_json())
    return path


@pytest.fixture
def registry_process(tmp_path: Path, spec_file: Path) -> Iterator[RegistryProcess]:
    process = RegistryProcess(tmp_path / "registry", spec_file, port=free_port(), tokens=TOKENS)
    yield process
    if process.process.poll() is None:
        process.terminate()


@pytest.fixture
def replica(registry_process: RegistryProcess, model_dir: Path, tmp_path: Path) -> Iterator[Replica]:
    config = ServingConfig(
        base_model={"path": model_dir},
        registry={"address": f"127.0.0.1:{registry_process.port}", "token": OPERATOR_TOKEN, "watch_heartbeat_s": 1},
        cache={"disk_dir": tmp_path / "cache", "reg_cache_dir": tmp_path / "creg"},
    )
    built = build_replica(config, replica="outage")
    yield built
    built.close()


def generate(replica: Replica, concept: str) -> generator_pb2.GenerateResponse:
    message = generator_pb2.GenerateRequest(prompt="photo of a <outage-dog> dog", concepts=[concept], steps=2, seed=3)
    (outcome,) = replica.core.run_batch([replica.core.prepare(message, OPERATOR)])
    assert isinstance(outcome, generator_pb2.GenerateResponse), outcome
    return outcome


def test_resident_concepts_outlive_a_killed_registry_and_the_watch_resumes_after_it(
    registry_process: RegistryProcess, replica: Replica, spec: BaseSpec, tmp_path: Path, spec_file: Path
) -> None:
    with registry_process.client() as publisher:
        publisher.publish(to_bytes(*random_concept(spec, "outage-dog", seed=90)))
    wait_for(lambda: replica.watcher.applied == 1)  # steady state: an event arriving mid-lookup voids its caching
    assert list(generate(replica, "outage-dog").concepts) == ["outage-dog@1"]
    fetched = replica.stats.hits["registry"]

    registry_process.kill()  # from here any registry call of the replica fails: these use none
    assert list(generate(replica, "outage-dog").concepts) == ["outage-dog@1"]
    assert list(generate(replica, "outage-dog@1").concepts) == ["outage-dog@1"]
    assert replica.stats.hits["registry"] == fetched
    with pytest.raises(Unavailable):  # not resident: needs the registry, which is down
        replica.core.prepare(generator_pb2.GenerateRequest(prompt="a dog", concepts=["outage-cat"]), OPERATOR)

    restarted = RegistryProcess(tmp_path / "registry", spec_file, port=registry_process.port, tokens=TOKENS)
    try:
        with restarted.client() as publisher:
            publisher.publish(to_bytes(*random_concept(spec, "outage-dog", seed=91)))
        wait_for(lambda: replica.store.resolve("outage-dog", None) == ("outage-dog", 2))
        assert list(generate(replica, "outage-dog").concepts) == ["outage-dog@2"]
    finally:
        restarted.terminate()
