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

import grpc
import numpy as np
import pytest
from PIL import Image

from proto import generator_pb2
from serving.client import GeneratorClient
from serving.engine import DeltaEngine, GenerationRequest
from serving.proxy_status import REPLICA_STOPPED
from shared.basemodel import BaseModel
from shared.errors import CapacityExceeded, DeadlineExceeded, IncompatibleBase, InvalidArgument, NotFound
from shared.images import to_png
from shared.registry_client import RegistryClient
from tests.serving.conftest import OPERATOR_TOKEN, LiveServe
from tests.serving.rawgrpc import RawGenerator
from tests.support.synthetic import random_concept

Publish = Callable[..., Any]
OPERATOR = f"Bearer {OPERATOR_TOKEN}"
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
    options = {"steps": STEPS, "seed": 7, **options}
    return GeneratorClient.request(prompt, concepts=concepts, **options)


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
    direct = (
        DeltaEngine(tiny_base)
        .generate([GenerationRequest(prompt, delta=delta, steps=STEPS, seed=7, height=16, width=16)])[0]
        .images[0]
    )
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


def test_two_concepts_are_merged_once_then_served_from_the_merged_set_cache(
    gen: GeneratorClient, publish: Publish, live_serve: LiveServe
) -> None:
    publish("mix-cat", seed=31, category="cat")
    publish("mix-hat", seed=32, category="hat")
    prompt = "a <mix-cat> cat wearing a <mix-hat> hat"
    merges_before = metric(live_serve.scrape(), "cdserve_concept_merges_total")
    first = gen.generate(request(prompt, ("mix-cat", "mix-hat")))
    second = gen.generate(request(prompt, ("mix-hat", "mix-cat")))  # same set, other order
    assert sorted(first.concepts) == ["mix-cat@1", "mix-hat@1"] and first.timings.merge_ms > 0
    assert np.array_equal(pixels(first), pixels(second))
    poll(live_serve.scrape, lambda text: metric(text, "cdserve_concept_cache_hits_total", tier="merged") >= 1)
    assert metric(live_serve.scrape(), "cdserve_concept_merges_total") == merges_before + 1
    naive = gen.generate(request(prompt, ("mix-cat", "mix-hat"), multi_concept="naive_sum"))
    assert np.abs(pixels(naive) - pixels(first)).max() > 0


def test_concurrent_requests_with_different_concepts_share_one_batch(
    gen: GeneratorClient, publish: Publish, live_serve: LiveServe
) -> None:
    for i in range(3):
        publish(f"batch-{i}", seed=40 + i)
    gen.generate(
        request("warm <batch-0> <batch-1> <batch-2>", ("batch-0", "batch-1", "batch-2"), multi_concept="naive_sum")
    )
    requests = [request(f"photo of a <batch-{i}> dog", (f"batch-{i}",), seed=i) for i in range(3)]
    requests.append(request("photo of a dog"))
    barrier = threading.Barrier(len(requests))

    def send(message: generator_pb2.GenerateRequest) -> generator_pb2.GenerateResponse:
        barrier.wait()
        return gen.generate(message)

    with ThreadPoolExecutor(len(requests)) as pool:
        responses = list(pool.map(send, requests))
    assert [r.batch_requests for r in responses] == [4, 4, 4, 4]
    assert [list(r.concepts) for r in responses] == [["batch-0@1"], ["batch-1@1"], ["batch-2@1"], []]
    poll(live_serve.scrape, lambda text: metric(text, "cdserve_batch_requests_bucket", le="4.0") >= 1)


def test_generate_stream_reports_every_step_then_the_result(gen: GeneratorClient) -> None:
    events = list(gen.stream(request("a red square", num_images=2)))
    steps = [e.progress.step for e in events if e.HasField("progress")]
    assert steps == list(range(1, STEPS + 1)) and all(e.progress.total_steps == STEPS for e in events[:-1])
    elapsed = [e.progress.elapsed_ms for e in events[:-1]]  # since the request arrived, step after step
    assert elapsed[0] > 0 and elapsed == sorted(elapsed)
    result = events[-1].result
    assert len(result.images) == 2 and result.images[0].width == 16


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"steps": 1000}, "steps"),
        ({"width": 17}, "width"),
        ({"height": 4096}, "height"),
        ({"num_images": 99}, "num_images"),
        ({"guidance_scale": 500.0}, "guidance_scale"),
        ({"scheduler": "magic"}, "scheduler"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 5000}, "prompt"),
        ({"prompt": "a <not-requested> dog"}, "prompt"),
        ({"concepts": ["Bad Id!"]}, "concepts"),
        ({"concepts": ["a", "b", "c", "d", "e"]}, "concepts"),
    ],
)
def test_invalid_requests_fail_with_invalid_argument_naming_the_field(
    gen: GeneratorClient, options: dict[str, Any], field: str
) -> None:
    message = request("photo of a dog")
    for key, value in options.items():
        if key == "concepts":
            message.concepts.extend(value)
        else:
            setattr(message, key, value)
    with pytest.raises(InvalidArgument) as caught:
        gen.generate(message)
    assert re.search(rf"\b{field}\b", caught.value.message), caught.value.message


def test_unknown_and_foreign_concepts_fail_with_their_status(
    gen: GeneratorClient, publish: Publish, foreign_spec: Any
) -> None:
    with pytest.raises(NotFound):
        gen.generate(request("photo of a dog", ("never-published",)))
    with pytest.raises(NotFound):
        gen.generate(request("photo of a dog", ("never-published@3",)))
    publish("other-base", seed=50, base=foreign_spec)
    with pytest.raises(IncompatibleBase) as caught:
        gen.generate(request("photo of a <other-base> dog", ("other-base",)))
    assert "base model" in caught.value.message


def test_a_refused_request_is_logged_as_one_line_without_a_traceback(
    gen: GeneratorClient, live_serve: LiveServe
) -> None:
    with pytest.raises(NotFound):
        gen.generate(request("photo of a dog", ("never-published-logged",)))
    mentions = poll(
        lambda: [line for line in live_serve.replica_logs(APP).splitlines() if "never-published-logged" in line],
        accept=bool,
    )
    # One line at INFO; a traceback would end in a line naming the exception with the same message.
    assert len(mentions) == 1, mentions
    assert mentions[0].startswith("INFO ") and "Request refused: NOT_FOUND NOT_FOUND:" in mentions[0]


def test_deadlines_are_respected(gen: GeneratorClient) -> None:
    # A tenth of what the same request just took inside the replica: it expires mid-work on any machine.
    took_s = gen.generate(request("a slow one", steps=60)).timings.total_ms / 1000.0
    with pytest.raises(DeadlineExceeded):
        gen.generate(request("a slow one", steps=60), timeout_s=took_s / 10)
    assert len(gen.generate(request("the next one")).images) == 1


def test_a_full_queue_answers_resource_exhausted(live_serve: LiveServe) -> None:
    from ray import serve

    live_serve.deploy(
        "tight",
        queue={"max_ongoing_requests": 1, "max_queued_requests": 1},
        batching={"max_batch_size": 1, "batch_wait_timeout_s": 0.0},
    )
    try:
        with live_serve.client("tight") as client, ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(lambda _: _outcome(client, request("busy", steps=30)), range(6)))
        assert any(isinstance(o, CapacityExceeded) for o in outcomes), outcomes
        assert any(isinstance(o, generator_pb2.GenerateResponse) for o in outcomes), outcomes
    finally:
        serve.delete("tight")


def _outcome(client: GeneratorClient, message: generator_pb2.GenerateRequest) -> Any:
    try:
        return client.generate(message)
    except Exception as e:  # noqa: BLE001 - the test sorts outcomes by type
        return e


def test_calls_on_a_killed_replica_get_unavailable_then_its_replacement_serves(
    gen: GeneratorClient, live_serve: LiveServe
) -> None:
    """kill -9 of the replica while streams and unary calls are on it: each gets UNAVAILABLE with a
    clean message (read by a plain gRPC client without retries), then Serve's new replica answers;
    the project's client, which lets gRPC retry UNAVAILABLE, gets its answer from the new replica."""
    import ray

    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True) if f"SERVE_REPLICA::{APP}#" in a["name"]]
    assert len(replicas) == 1
    victim = ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"])
    before = gen.generate(request("before")).replica
    raw = RawGenerator(live_serve.target, APP)
    busy = request("in flight", steps=100, width=32, height=32)
    stepping = [threading.Event(), threading.Event()]
    try:
        with ThreadPoolExecutor(5) as pool:
            calls = [pool.submit(raw.stream, busy, OPERATOR, lambda _, seen=seen: seen.set()) for seen in stepping]
            calls += [pool.submit(raw.generate, busy, OPERATOR) for _ in range(2)]
            retried = pool.submit(gen.generate, busy)
            assert all(seen.wait(timeout=60) for seen in stepping)  # the replica is denoising them
            ray.kill(victim, no_restart=True)
            killed_at = time.monotonic()
            answers = [c.result() for c in calls]
            assert retried.result().replica != before
        for answer in answers:
            assert answer.code == grpc.StatusCode.UNAVAILABLE, answer
            assert answer.details == REPLICA_STOPPED and answer.detail is not None
            assert answer.detail.reason == "UNAVAILABLE" and answer.detail.message == REPLICA_STOPPED
        assert all(any(m.HasField("progress") for m in a.messages) for a in answers[:2])
        ok = lambda a: a.code == grpc.StatusCode.OK  # noqa: E731
        after = poll(lambda: raw.generate(request("after"), OPERATOR), ok, timeout_s=120)
        print(f"replacement answered {time.monotonic() - killed_at:.1f} s after the kill")
    finally:
        raw.close()
    assert after.messages[0].replica != before and len(after.messages[0].images) == 1
