"""HTTP fixtures: the whole serving side on a real local Ray, as `cdserve up` runs it — a registry,
the training service (Ray Jobs), the Generator application (gRPC) and the HTTP application on
Serve's HTTP proxy — started once for every module of this package, with concepts of two tenants."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from serving.config import ServingConfig
from serving.http.config import HttpConfig
from shared.artifact import to_bytes
from shared.registry_client import RegistryClient
from tests.serving.conftest import free_port
from tests.support.synthetic import random_concept
from tests.training.conftest import TrainingStack, tiny_base_dir, training_stack  # noqa: F401 - a fixture
from training.service.config import SubmitLimits

TOKENS = {"tok-acme": "acme", "tok-beta": "beta", "tok-ops": "*"}
LIMITS = SubmitLimits(
    max_concepts=2, max_images_per_concept=8, max_image_bytes=64_000, max_image_side=512, max_steps=50
)
MAX_UPLOAD_BYTES = 200_000


@dataclass
class HttpStack:
    url: str
    """The playground's URL (ends with '/'); the API lives under it at v1/…"""
    grpc_target: str
    training: TrainingStack
    serving: ServingConfig
    concepts: dict[str, Any]
    """name → ConceptInfo: 'acme-private' (acme), 'beta-public' (beta, public), 'beta-private' (beta)."""

    def call(self, method: str, path: str, *, token: str | None = None, **options: Any) -> requests.Response:
        headers = dict(options.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.url + path, headers=headers, timeout=120, **options)


def publish(registry: str, spec: Any, concept_id: str, token: str, *, seed: int, public: bool = False) -> Any:
    header, delta = random_concept(spec, concept_id, seed=seed, modifier_token=f"<{concept_id}>", category="dog")
    with RegistryClient(registry, token=token) as client:
        return client.publish(to_bytes(header, delta), public=public).concept


def wait_until_serving(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(url + "playground/settings", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout_s} s"
        time.sleep(0.2)


@pytest.fixture(scope="package")
def http_stack(tmp_path_factory: pytest.TempPathFactory, tiny_base_dir: Path) -> Iterator[HttpStack]:  # noqa: F811
    from ray import serve

    from serving.app import run_app
    from serving.http.app import run_http_app

    root = tmp_path_factory.mktemp("http-stack")
    tokens_file = root / "tokens.yaml"
    tokens_file.write_text(yaml.safe_dump({"tokens": TOKENS}))
    with training_stack(root, tiny_base_dir, LIMITS, TOKENS) as stack:
        serving = ServingConfig(
            app_name="gen",
            route_prefix="/gen",
            grpc_port=free_port(),
            http_port=free_port(),
            metrics_export_port=free_port(),
            base_model={"path": tiny_base_dir},
            registry={"address": stack.registry_target, "token": "tok-ops", "watch_heartbeat_s": 1},
            auth={"tokens_file": tokens_file},
            cache={"reg_cache_dir": root / "creg"},
            ray_actor_options={"num_cpus": 0.2, "num_gpus": "auto"},
        )
        config = HttpConfig(
            training_address=stack.target,
            max_body_bytes=64_000,
            max_upload_bytes=MAX_UPLOAD_BYTES,
            preview={"steps": 3, "cache_dir": root / "previews"},
            training_recipe={"steps": 2, "batch_size": 2},
        )
        try:
            run_app(serving)
            url = run_http_app(serving, config)
            wait_until_serving(url)
            concepts = {
                "acme-private": publish(stack.registry_target, stack.spec, "acme-dog", "tok-acme", seed=1),
                "beta-public": publish(stack.registry_target, stack.spec, "beta-cat", "tok-beta", seed=2, public=True),
                "beta-private": publish(stack.registry_target, stack.spec, "beta-fox", "tok-beta", seed=3),
            }
            yield HttpStack(url, f"127.0.0.1:{serving.grpc_port}", stack, serving, concepts)
        finally:
            serve.shutdown()
