"""Where the engine's attention processor goes, and how a batch's conditioning reaches it: only the
cross-attention layers get it, the self-attention layers keep diffusers' stock processor and are
handed nothing they do not expect, and a batch bound on one thread is invisible to another."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from diffusers.models.attention_processor import AttnProcessor2_0

from serving.engine import DeltaEngine, GenerationRequest
from serving.engine.processor import DeltaAttnProcessor
from shared.basemodel import cross_attention_layers
from tests.support.synthetic import random_concept

STEPS, SIZE = 3, 16


@pytest.fixture(scope="module")
def engine(tiny_base) -> DeltaEngine:
    return DeltaEngine(tiny_base)


@pytest.fixture(scope="module")
def crossattn_concept(tiny_base, device):
    """A concept with `to_q`/`to_out` deltas too: the projections that act on image features."""
    projections = ("to_k", "to_v", "to_q", "to_out")
    return random_concept(tiny_base.spec, "fox", seed=3, rank=2, modifier_token="<fox>", projections=projections)[1].to(
        device
    )


@pytest.fixture
def diffusers_warnings() -> Iterator[list[logging.LogRecord]]:
    """Warnings diffusers logs (its loggers do not propagate to pytest's capture)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("diffusers")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_only_cross_attention_layers_get_the_delta_processor(engine) -> None:
    cross = {f"{name}.processor" for name in cross_attention_layers(engine.unet)}
    processors = engine.unet.attn_processors
    assert cross and set(processors) > cross
    for name, processor in processors.items():
        assert type(processor) is (DeltaAttnProcessor if name in cross else AttnProcessor2_0), name


def test_a_batch_with_concepts_logs_no_diffusers_warning(engine, crossattn_concept, diffusers_warnings) -> None:
    requests = [
        GenerationRequest("a <fox> fox", delta=crossattn_concept, steps=STEPS, height=SIZE, width=SIZE, seed=1),
        GenerationRequest("a dog", steps=STEPS, height=SIZE, width=SIZE, seed=2),
    ]
    engine.generate(requests)
    assert [record.getMessage() for record in diffusers_warnings] == []


def test_batches_on_two_threads_each_see_their_own_concepts(engine, crossattn_concept) -> None:
    def request(delta) -> GenerationRequest:
        prompt = "a <fox> fox" if delta else "a fox"
        return GenerationRequest(prompt, delta=delta, steps=STEPS, height=SIZE, width=SIZE, seed=4)

    alone = {
        name: engine.generate([request(delta)])[0].images
        for name, delta in (("fox", crossattn_concept), ("plain", None))
    }
    start = threading.Barrier(2)
    got: dict[str, np.ndarray] = {}

    def run(name: str, delta) -> None:
        start.wait()
        for _ in range(3):  # several rounds, so that the two threads' UNet calls interleave
            got[name] = engine.generate([request(delta)])[0].images

    threads = [threading.Thread(target=run, args=args) for args in (("fox", crossattn_concept), ("plain", None))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert np.abs(alone["fox"] - alone["plain"]).max() > 1e-2
    for name, images in alone.items():
        np.testing.assert_allclose(got[name], images, atol=1e-5, rtol=0)
