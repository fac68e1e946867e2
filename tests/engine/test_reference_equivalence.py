"""The engine's per-request K/V and injected embeddings equal stock diffusers with weights patched in."""

from __future__ import annotations

import numpy as np
import pytest

from serving.engine import DeltaEngine, GenerationRequest
from tests.engine.reference import stock_generate
from tests.support.synthetic import random_concept

STEPS, GUIDANCE, SIZE = 4, 5.0, 16


@pytest.fixture(scope="module")
def engine_and_pristine(tiny_base):
    """The engine over one copy of the base; a pristine copy for the reference (made before the engine)."""
    import copy

    pristine = copy.deepcopy(tiny_base.pipeline)
    return DeltaEngine(copy.deepcopy(tiny_base)), pristine


@pytest.fixture(scope="module")
def concepts(tiny_base, device):
    dense = random_concept(tiny_base.spec, "dog-a", seed=1, modifier_token="<dog-a>")[1]
    low_rank = random_concept(tiny_base.spec, "cat-b", seed=2, rank=3, modifier_token="<cat-b>", category="cat")[1]
    crossattn = random_concept(
        tiny_base.spec,
        "fox-c",
        seed=3,
        rank=2,
        modifier_token="<fox-c>",
        category="fox",
        projections=("to_k", "to_v", "to_q", "to_out"),
    )[1]
    return tuple(delta.to(device) for delta in (dense, low_rank, crossattn))


def test_mixed_batch_matches_stock_diffusers_per_request(engine_and_pristine, concepts):
    engine, pristine = engine_and_pristine
    dense, low_rank, crossattn = concepts
    requests = [
        GenerationRequest("a photo of a dog", negative_prompt="blurry", delta=None, seed=11),
        GenerationRequest("a photo of a <dog-a> dog on the beach", delta=dense, seed=12),
        GenerationRequest(
            "a painting of a <cat-b> cat",
            negative_prompt="<cat-b>",
            delta=low_rank,
            seed=13,
            num_images=2,
            guidance_scale=3.0,
        ),
        GenerationRequest("a <fox-c> fox", delta=crossattn, seed=14),  # mode crossattn: per-row q/out deltas
    ]
    for r in requests:
        r.steps, r.height, r.width = STEPS, SIZE, SIZE
        r.guidance_scale = r.guidance_scale if r.guidance_scale != 7.5 else GUIDANCE
    results = engine.generate(requests)
    for request, result in zip(requests, results, strict=True):
        expected = stock_generate(
            pristine,
            request.delta,
            request.prompt,
            negative_prompt=request.negative_prompt,
            seed=request.seed,
            steps=STEPS,
            guidance_scale=request.guidance_scale,
            size=SIZE,
            num_images=request.num_images,
        )
        assert result.images.shape == expected.shape
        np.testing.assert_allclose(result.images, expected, atol=1e-4, rtol=0)


def test_concept_changes_the_image(engine_and_pristine, concepts):
    engine, _ = engine_and_pristine
    base, with_concept = engine.generate(
        [
            GenerationRequest("a photo of a dog", steps=STEPS, height=SIZE, width=SIZE, seed=5),
            GenerationRequest(
                "a photo of a <dog-a> dog", delta=concepts[0], steps=STEPS, height=SIZE, width=SIZE, seed=5
            ),
        ]
    )
    assert np.abs(base.images - with_concept.images).max() > 1e-2


def test_request_output_does_not_depend_on_its_batch(engine_and_pristine, concepts):
    engine, _ = engine_and_pristine
    dense, low_rank, _ = concepts
    target = GenerationRequest("a photo of a <dog-a> dog", delta=dense, seed=7, steps=STEPS, height=SIZE, width=SIZE)
    alone = engine.generate([target])[0].images
    neighbours = [
        GenerationRequest("a cat", delta=low_rank, seed=1, steps=STEPS, height=SIZE, width=SIZE, num_images=3),
        GenerationRequest("a house", seed=2, steps=STEPS, height=SIZE, width=SIZE, guidance_scale=2.0),
    ]
    batched = engine.generate([neighbours[0], target, neighbours[1]])[1].images
    np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=0)


def test_base_weights_are_never_written(tiny_base, engine_and_pristine, concepts):
    engine, pristine = engine_and_pristine
    before = {k: v.clone() for k, v in engine.unet.state_dict().items()}
    table = engine.pipeline.text_encoder.get_input_embeddings().weight.clone()
    engine.generate([GenerationRequest("a <dog-a> dog", delta=concepts[0], steps=2, height=SIZE, width=SIZE)])
    for key, value in engine.unet.state_dict().items():
        assert (value == before[key]).all(), key
    assert (engine.pipeline.text_encoder.get_input_embeddings().weight == table).all()
    assert len(engine.pipeline.tokenizer) == len(pristine.tokenizer)
