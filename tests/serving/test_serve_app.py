"""End to end on a real local Ray: registry → Serve gRPC proxy → Generator replica → engine.

One application (`gen`) serves every test of this module; tests use their own concept ids.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from PIL import Image

from proto import generator_pb2
from serving.client import GeneratorClient
from serving.engine import DeltaEngine, GenerationRequest
from serving.replica import to_png
from shared.basemodel import BaseModel
from shared.registry_client import RegistryClient
from shared.errors import CapacityExceeded, DeadlineExceeded, IncompatibleBase, InvalidArgument, NotFound
from shared.synthetic import random_concept
from tests.serving.conftest import LiveServe

Publish = Callable[..., Any]
STEPS = 3
APP = "gen"


@pytest.fixture(scope="module")
def gen(live_serve: LiveServe) -> GeneratorClient:
    live_serve.deploy(APP, batching={"max_batch_size": 8, "batch_wait_timeout_s": 0.3})
    with live_serve.client(APP) as client:
        yield client


def pixels(response: generator_pb2.GenerateResponse, i: int = 0) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(response.images[i].png)), dtype=np.int16)


def request(prompt: str, concepts: tuple[str, ...] = (), **options: Any) -> generator_pb2.GenerateRequest:
    return GeneratorClient.request(prompt, concepts=concepts, steps=STEPS, seed=options.pop("seed", 7), **options)


def poll(call: Callable[[], Any], accept: Callable[[Any], bool], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = call()
        except Exception as e:  # noqa: BLE001 - the outcome itself is what `accept` judges
            result = e
        if accept(result):
            return result
        assert time.monotonic() < deadline, f"last outcome: {result!r}"
        time.sleep(0.1)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a Ray-exported series over every replica, matching `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f"ray_{name}") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_publish_generate_swap_delete(
    gen: GeneratorClient, publish: Publish, operator: RegistryClient, tiny_base: BaseModel, spec: Any
) -> None:
    publish("e2e-dog", seed=21)
    prompt = "photo of a <e2e-dog> dog"
    first = gen.generate(request(prompt, ("e2e-dog",)))
    assert list(first.concepts) == ["e2e-dog@1"] and first.seed == 7 and first.replica
    _, delta = random_concept(spec, "e2e-dog", seed=21)
    direct = DeltaEngine(tiny_base).generate(
        [GenerationRequest(prompt, delta=delta, steps=STEPS, seed=7, height=16, width=16)]
    )[0].images[0]
    expected = np.asarray(Image.open(io.BytesIO(to_png(direct))), dtype=np.int16)
    assert np.abs(pixels(first) - expected).max() <= 1
    base = gen.generate(request("photo of a dog"))
    assert np.abs(pixels(base) - pixels(first)).max() > 10

    publish("e2e-dog", seed=22)
    uses_v2 = lambda r: list(getattr(r, "concepts", [])) == ["e2e-dog@2"]  # noqa: E731
    second = poll(lambda: gen.generate(request(prompt, ("e2e-dog",))), uses_v2, timeout_s=5)
    assert np.abs(pixels(second) - pixels(first)).max() > 10
    assert uses_v2(gen.generate(request(prompt, ("e2e-dog",))))  # and stays there

    operator.delete("e2e-dog")
    gone = poll(lambda: gen.generate(request(prompt, ("e2e-dog",))), lambda r: isinstance(r, NotFound), timeout_s=5)
    assert "e2e-dog" in gone.message
