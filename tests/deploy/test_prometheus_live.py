"""A real Prometheus server (Debian's binary) runs the production scrape config and alert rules
(Kubernetes discovery swapped for files that carry the pods' labels) against a real registry, a
real training service and a real Serve application on 127.0.0.1, and its HTTP API must show the
project's metrics with the values the traffic implies, every alert rule evaluating cleanly and
every dashboard query answering."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.basemodels import materialize_tiny
from serving.registry.config import RegistryConfig
from shared.artifact import to_bytes
from tests.deploy.conftest import ROOT, PrometheusTools
from tests.deploy.promconfig import metric_names, pod_target, production_config, with_file_discovery
from tests.deploy.test_monitoring import concrete, dashboard_queries
from tests.registry.conftest import ServerThread
from tests.support.synthetic import random_concept
from training.service.config import TrainingServiceConfig

TOKENS = {"tok-ops": "*"}
CONCEPT = "prom-dog"
STARTUP_TIMEOUT_S = 150


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TrainingThread:
    """The training service on its own event loop in a daemon thread (no job is ever submitted)."""

    def __init__(self, config: TrainingServiceConfig) -> None:
        from training.service.server import start_training_service

        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.handle = asyncio.run_coroutine_threadsafe(start_training_service(config), self.loop).result(60)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.handle.stop(0), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize_tiny(tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, tiny_base: Any) -> Iterator[ServerThread]:
    config = RegistryConfig(data_dir=tmp_path_factory.mktemp("registry"), metrics_port=0, shutdown_grace_s=0.0)
    server = ServerThread(config, [tiny_base.spec], TOKENS)
    with server.client("tok-ops") as client:
        # Public: the scraped Serve app takes anonymous Generate calls, which see public concepts only.
        client.publish(to_bytes(*random_concept(tiny_base.spec, CONCEPT, seed=3)), public=True)
    yield server
    server.close()


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[TrainingThread]:
    config = TrainingServiceConfig(
        data_dir=tmp_path_factory.mktemp("training"),
        base_model=str(model_dir),
        metrics_port=0,
        ray_address="http://127.0.0.1:1",
        poll_interval_s=0.2,
    )
    service = TrainingThread(config)
    yield service
    service.close()


@pytest.fixture(scope="module")
def serve_app(registry: ServerThread, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The Serve app in its own process; yields the Ray metrics port once it has served traffic."""
    metrics_port = free_port()
    options = {
        "metrics_port": metrics_port,
        "concept": CONCEPT,
        "prompt": f"photo of a <{CONCEPT}> dog",
        "overrides": {
            "grpc_port": free_port(),
            "http_port": free_port(),
            "metrics_export_port": metrics_port,
            "base_model": {"path": str(model_dir)},
            "registry": {"address": registry.target, "token": "tok-ops", "watch_heartbeat_s": 1},
            "cache": {"disk_dir": None, "reg_cache_dir": str(tmp_path_factory.mktemp("creg"))},
            "ray_actor_options": {"num_cpus": 0.2, "num_gpus": "auto"},
            "autoscaling": None,
        },
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.deploy.serve_target", json.dumps(options)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            output.append(line)
            if line.strip() == "READY":
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(STARTUP_TIMEOUT_S), "serve target did not get ready:\n" + "".join(output[-40:])
        yield metrics_port
    finally:
        process.stdin.close()  # type: ignore[union-attr]
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def prometheus(
    prometheus_tools: PrometheusTools,
    registry: ServerThread,
    training: TrainingThread,
    serve_app: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], Any]]:
    """A Prometheus server on a free 127.0.0.1 port; yields query(path) → the API's `data`."""
    tmp = tmp_path_factory.mktemp("prometheus")
    registry_template = {"app.kubernetes.io/name": "cdserve-registry", "app.kubernetes.io/component": "registry"}
    training_template = {"app.kubernetes.io/name": "cdserve-training", "app.kubernetes.io/component": "training"}
    ray_worker = {
        "app.kubernetes.io/component": "ray-worker",
        "ray.io/node-type": "worker",
        "ray.io/group": "gpu",
        "ray.io/cluster": "cdserve-raycluster-local",
    }
    targets = [
        pod_target(f"127.0.0.1:{registry.handle.metrics_port}", "cdserve-registry-0", registry_template, "metrics"),
        pod_target(f"127.0.0.1:{registry.port}", "cdserve-registry-0", registry_template, "grpc"),  # must be dropped
        pod_target(f"127.0.0.1:{training.handle.metrics_port}", "cdserve-training-0", training_template, "metrics"),
        pod_target(f"127.0.0.1:{serve_app}", "cdserve-raycluster-local-gpu-0", ray_worker, "metrics"),
    ]
    (tmp / "targets.json").write_text(json.dumps(targets))
    config = with_file_discovery(
        production_config(), tmp / "targets.json", scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s"
    )
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            prometheus_tools.prometheus,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def api(path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}", timeout=5) as reply:
            body = json.loads(reply.read())
        assert body["status"] == "success", body
        return body["data"]

    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                api("status/buildinfo")
                break
            except OSError:
                assert process.poll() is None, (tmp / "prometheus.log").read_text()
                assert time.monotonic() < deadline, "prometheus did not start"
                time.sleep(0.2)
        yield api
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def query(api: Callable[[str], Any], expr: str) -> list[dict[str, Any]]:
    return api("query?" + urllib.parse.urlencode({"query": expr}))["result"]


def value(api: Callable[[str], Any], expr: str) -> float | None:
    result = query(api, expr)
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def eventually(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_prometheus_scrapes_the_registry_training_service_and_serve_app(prometheus: Callable[[str], Any]) -> None:
    def targets_up() -> None:
        active = prometheus("targets")["activeTargets"]
        assert sorted((t["labels"]["job"], t["health"]) for t in active) == [
            ("cdserve-registry", "up"),
            ("cdserve-training", "up"),
            ("ray", "up"),
        ], active
        (ray_target,) = [t for t in active if t["labels"]["job"] == "ray"]
        assert (
            ray_target["labels"]["ray_node_type"] == "worker"
            and ray_target["labels"]["pod"] == "cdserve-raycluster-local-gpu-0"
        )

    eventually(targets_up)

    def registry_metrics() -> None:
        publishes = query(prometheus, 'cdserve_registry_requests_total{job="cdserve-registry", code="OK"}')
        assert {r["metric"]["method"]: float(r["value"][1]) for r in publishes}.get("Registry/Publish") == 1.0, (
            publishes
        )
        assert value(prometheus, "cdserve_registry_concepts_live") == 1.0
        assert value(prometheus, "cdserve_registry_stored_bytes") > 10_000  # one tiny concept artifact
        assert value(prometheus, 'sum(cdserve_registry_transfer_bytes_total{direction="upload"})') > 10_000
        assert value(prometheus, "sum(cdserve_registry_watchers_active)") >= 1.0  # the replica's watch

    eventually(registry_metrics)

    def training_metrics() -> None:
        states = {r["metric"]["state"]: float(r["value"][1]) for r in query(prometheus, "cdserve_training_jobs")}
        assert set(states) == {"PENDING", "RUNNING", "PUBLISHING", "SUCCEEDED", "FAILED", "CANCELLED"}
        assert set(states.values()) == {0.0}

    eventually(training_metrics)

    def serving_metrics() -> None:
        calls = {
            r["metric"]["code"]: float(r["value"][1])
            for r in query(prometheus, 'sum by (code) (ray_cdserve_request_latency_seconds_count{method="Generate"})')
        }
        assert calls == {"OK": 1.0, "NOT_FOUND": 1.0}, calls
        assert value(prometheus, "sum(ray_cdserve_images_total)") == 1.0
        assert value(prometheus, 'sum(ray_cdserve_concept_cache_hits_total{tier="registry"})') == 1.0
        latency = value(prometheus, 'sum(ray_cdserve_request_latency_seconds_sum{code="OK"})')
        assert latency is not None and 0.0 < latency < 120.0
        assert (
            value(
                prometheus, 'min(ray_serve_deployment_replica_healthy{application="cdserve", deployment="Generator"})'
            )
            == 1.0
        )
        grpc = {
            r["metric"]["status_code"]: float(r["value"][1])
            for r in query(
                prometheus, 'sum by (status_code) (ray_serve_num_grpc_requests_total{application="cdserve"})'
            )
        }
        assert sum(grpc.values()) >= 2.0, grpc

    eventually(serving_metrics, timeout_s=45.0)


def test_alert_rules_evaluate_cleanly_and_nothing_fires_on_a_healthy_system(prometheus: Callable[[str], Any]) -> None:
    def rules_evaluated() -> None:
        rules = [rule for group in prometheus("rules")["groups"] for rule in group["rules"]]
        assert len(rules) == 12
        for rule in rules:
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
            assert rule["lastEvaluation"] > "2000", rule["name"]  # evaluated at least once
        assert [r["name"] for r in rules if r["state"] != "inactive"] == []

    eventually(rules_evaluated)


def test_every_dashboard_query_answers(prometheus: Callable[[str], Any]) -> None:
    """Each query is valid PromQL for the server, and returns data whenever the series it reads exist
    (GPU, autoscaler and eviction series do not exist on a CPU-only box without pressure)."""

    def exists(name: str) -> bool:
        return bool(query(prometheus, f"count({name})"))

    def answers() -> None:
        silent = []
        for where, expr in dashboard_queries():
            result = query(prometheus, concrete(expr))  # a PromQL error fails here (status != success)
            if not result and all(exists(name) for name in metric_names(expr)):
                silent.append(where)
        assert silent == []

    eventually(answers)
    assert sum(bool(query(prometheus, concrete(expr))) for _, expr in dashboard_queries()) >= 20
