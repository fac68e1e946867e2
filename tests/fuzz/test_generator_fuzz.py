"""Arbitrary values in every field of a GenerateRequest, through Ray Serve's real gRPC proxy to a
real replica (tiny model, a real registry behind it): never INTERNAL or UNKNOWN, and after every
example the same replica still generates an image for a plain request.

The request limits are set small (a few steps at 32-64 px) so that the requests that pass
validation generate in a fraction of a second on a CPU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from proto import generator_pb2, generator_pb2_grpc
from serving.basemodels import materialize_tiny
from serving.config import ServingConfig
from shared.artifact import to_bytes
from shared.basemodel import BaseModel
from tests.fuzz.conftest import CALL_TIMEOUT_S, TOKENS, fuzz_settings, metadata, outcome
from tests.fuzz.messages import messages, one_field_changed
from tests.registry.conftest import TOKENS as SERVICE_TOKENS
from tests.registry.conftest import ServerThread
from tests.serving.conftest import free_port
from tests.support.synthetic import random_concept

APP = "fuzz"
PLAIN = generator_pb2.GenerateRequest(prompt="photo of a dog", steps=1, width=32, height=32, seed=1)
VALID = generator_pb2.GenerateRequest(
    prompt="photo of a <fuzz-dog> dog",
    concepts=["fuzz-dog"],
    steps=2,
    width=32,
    height=32,
    seed=1,
    num_images=1,
    request_id="fuzz",
)
LIMITS = {
    "max_steps": 3,
    "default_steps": 2,
    "max_width_px": 64,
    "max_height_px": 64,
    "max_num_images": 2,
    "max_prompt_chars": 200,
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, tiny_base: BaseModel) -> Iterator[ServerThread]:
    from serving.registry.config import RegistryConfig

    folder = tmp_path_factory.mktemp("fuzz-gen-registry")
    config = RegistryConfig(data_dir=folder, shutdown_grace_s=0.0, metrics_port=None)
    server = ServerThread(config, [tiny_base.spec], dict(SERVICE_TOKENS))
    with server.client("tok-acme") as acme:
        acme.publish(to_bytes(*random_concept(tiny_base.spec, "fuzz-dog", seed=5)), public=True)
        acme.publish(to_bytes(*random_concept(tiny_base.spec, "fuzz-cat", seed=6)))
    yield server
    server.close()


@pytest.fixture(scope="module")
def target(registry: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import ray
    from ray import serve

    from serving.app import run_app

    root: Path = tmp_path_factory.mktemp("fuzz-serve")
    tokens_file = root / "tokens.yaml"
    tokens_file.write_text(yaml.safe_dump({"tokens": SERVICE_TOKENS}))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    config = ServingConfig(
        app_name=APP,
        route_prefix=f"/{APP}",
        grpc_port=free_port(),
        http_port=free_port(),
        base_model={"path": materialize_tiny(root / "tiny")},
        limits=LIMITS,
        registry={"address": registry.target, "token": "tok-ops", "watch_heartbeat_s": 1},
        auth={"tokens_file": tokens_file, "allow_anonymous": True},
        cache={"disk_dir": None, "reg_cache_dir": root / "creg"},
        ray_actor_options={"num_cpus": 0.2, "num_gpus": "auto"},
    )
    try:
        run_app(config)
        yield f"127.0.0.1:{config.grpc_port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def stub(target: str) -> Iterator[generator_pb2_grpc.GeneratorStub]:
    with grpc.insecure_channel(target, options=[("grpc.enable_retries", 0)]) as channel:
        yield generator_pb2_grpc.GeneratorStub(channel)


HINTS = {
    "prompt": st.sampled_from(["photo of a <fuzz-dog> dog", "a <fuzz-cat> cat and a <fuzz-dog> dog", "a dog"]),
    "concepts": st.sampled_from(["fuzz-dog", "fuzz-dog@1", "fuzz-cat", "fuzz-dog@99999999999999999999", "fuzz-dog\n"]),
    "steps": st.integers(1, 3),
    "width": st.sampled_from([32, 40, 64]),
    "height": st.sampled_from([32, 40, 64]),
    "num_images": st.integers(0, 2),
    "guidance_scale": st.sampled_from([0.0, 1.0, 7.5]),
    "scheduler": st.sampled_from(["", "default"]),
}


@pytest.mark.parametrize("name", ["Generate", "GenerateStream"])
def test_any_request_is_answered_cleanly_and_the_replica_keeps_generating(stub, name):
    method = getattr(stub, name)

    requests = st.one_of(messages(generator_pb2.GenerateRequest, HINTS), one_field_changed(VALID, HINTS))

    @fuzz_settings(default_examples=20)
    @given(request=requests, token=TOKENS)
    def run(request, token):
        call_metadata = metadata(token, ("application", APP))
        answer = outcome(lambda: method(request, metadata=call_metadata, timeout=CALL_TIMEOUT_S), most_messages=100)
        answer.check(f"Generator/{name}")
        plain = stub.Generate(PLAIN, metadata=(("application", APP),), timeout=CALL_TIMEOUT_S)
        assert plain.images and plain.images[0].png.startswith(b"\x89PNG")

    run()
