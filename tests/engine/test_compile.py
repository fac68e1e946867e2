"""The compiled UNet takes per-request K/V as inputs: switching concepts never recompiles, a partly
filled batch reuses its bucket's graph, and the images equal the eager engine's."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from serving.engine import DeltaEngine, GenerationRequest
from serving.engine.unet import UNetRunner, bucket
from tests.support.synthetic import random_concept

SWITCHES = 50


def test_buckets_are_the_next_power_of_two() -> None:
    assert [bucket(rows) for rows in (1, 2, 3, 4, 5, 8, 9, 16, 17)] == [1, 2, 4, 4, 8, 8, 16, 16, 32]


@pytest.fixture(scope="module")
def concepts(tiny_base, device):
    spec = tiny_base.spec
    made = [
        random_concept(spec, f"switch-{i}", seed=100 + i, rank=None if i % 3 == 0 else 1 + i % 4)[1] for i in range(12)
    ]
    return [delta.to(device) for delta in made]


@pytest.mark.slow  # dynamo traces the UNet once per bucket: tens of seconds on a busy CPU
def test_many_concept_switches_compile_nothing_new_and_match_eager(tiny_base, concepts) -> None:
    torch._dynamo.reset()
    eager = DeltaEngine(tiny_base)
    compiled = DeltaEngine(tiny_base)
    counter = CompileCounterWithBackend("eager")
    compiled.unet_runner = UNetRunner(compiled.unet, compile=True, backend=counter)
    rng = random.Random(0)

    def batch(size: int, seed: int) -> list[GenerationRequest]:
        chosen = [rng.choice([None, *concepts]) for _ in range(size)]
        return [
            GenerationRequest(
                f"a {next(iter(d.token_embeddings)) if d else 'plain'} dog",
                delta=d,
                steps=2,
                height=16,
                width=16,
                seed=seed + i,
            )
            for i, d in enumerate(chosen)
        ]

    for size in (1, 3):  # 2 and 6 UNet rows: the buckets 2 and 8
        compiled.generate(batch(size, seed=0))
    compiles_after_warm_up = counter.frame_count
    assert compiles_after_warm_up > 0

    for switch in range(SWITCHES):
        requests = batch(rng.choice([1, 3, 4]), seed=1000 + switch)  # 4 fills bucket 8, 3 pads it
        got = compiled.generate(requests)
        if switch % 20 == 0:  # spot checks against eager (the batch padding must change nothing)
            for result, expected in zip(got, eager.generate(requests), strict=True):
                np.testing.assert_allclose(result.images, expected.images, atol=1e-4, rtol=0)
    assert counter.frame_count == compiles_after_warm_up
