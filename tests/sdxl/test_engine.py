"""On SDXL the engine's per-request K/V, pooled embeddings, time ids and modifier tokens in both
text encoders equal stock `StableDiffusionXLPipeline` with each concept patched in."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from serving.engine import GenerationRequest, SDXLDeltaEngine, create_engine
from tests.engine.reference import stock_generate
from tests.sdxl.reference import patched_sdxl_pipeline
from tests.support.synthetic import random_concept

STEPS, GUIDANCE, SIZE = 3, 5.0, 16


@pytest.fixture(scope="module")
def engine_and_pristine(sdxl_base):
    pristine = copy.deepcopy(sdxl_base.pipeline)
    return create_engine(copy.deepcopy(sdxl_base)), pristine


@pytest.fixture(scope="module")
def concepts(sdxl_base):
    dense = random_concept(sdxl_base.spec, "dog-a", seed=1, modifier_token="<dog-a>")[1]
    low_rank = random_concept(sdxl_base.spec, "cat-b", seed=2, rank=3, modifier_token="<cat-b>", category="cat")[1]
    return dense, low_rank


def _request(prompt: str, **fields) -> GenerationRequest:
    return GenerationRequest(
        prompt, **{"steps": STEPS, "height": SIZE, "width": SIZE, "guidance_scale": GUIDANCE, **fields}
    )


def test_an_sdxl_base_gets_the_sdxl_engine(engine_and_pristine, sdxl_base):
    assert sdxl_base.spec.family == "sdxl"
    assert isinstance(engine_and_pristine[0], SDXLDeltaEngine)


def test_mixed_sdxl_batch_matches_stock_sdxl_pipeline_per_request(engine_and_pristine, concepts):
    engine, pristine = engine_and_pristine
    dense, low_rank = concepts
    requests = [
        _request("a photo of a dog", negative_prompt="blurry", seed=11),
        _request("a photo of a <dog-a> dog on the beach", delta=dense, seed=12),
        _request(
            "a painting of a <cat-b> cat",
            negative_prompt="<cat-b>",
            delta=low_rank,
            seed=13,
            num_images=2,
            original_size=(32, 24),
            crop_top_left=(4, 2),
            target_size=(16, 8),
        ),
        _request("a <dog-a> dog and a cat", delta=dense, seed=14, crop_top_left=(8, 0)),
    ]
    results = engine.generate(requests)
    for request, result in zip(requests, results, strict=True):
        micro = {
            "original_size": request.original_size,
            "crops_coords_top_left": request.crop_top_left,
            "target_size": request.target_size,
        }
        expected = stock_generate(
            pristine,
            request.delta,
            request.prompt,
            patch=patched_sdxl_pipeline,
            negative_prompt=request.negative_prompt or None,
            seed=request.seed,
            steps=STEPS,
            guidance_scale=GUIDANCE,
            size=SIZE,
            num_images=request.num_images,
            **{k: v for k, v in micro.items() if v is not None},
        )
        assert result.images.shape == expected.shape
        np.testing.assert_allclose(result.images, expected, atol=1e-4, rtol=0)


def test_time_ids_and_concepts_change_the_image(engine_and_pristine, concepts):
    engine, _ = engine_and_pristine
    plain, cropped, with_concept = engine.generate(
        [
            _request("a photo of a dog", seed=5),
            _request("a photo of a dog", seed=5, crop_top_left=(12, 12)),
            _request("a photo of a <dog-a> dog", delta=concepts[0], seed=5),
        ]
    )
    assert np.abs(plain.images - cropped.images).max() > 1e-3
    assert np.abs(plain.images - with_concept.images).max() > 1e-3


def test_each_half_of_a_token_embedding_reaches_its_own_encoder(engine_and_pristine, sdxl_base):
    prompts = engine_and_pristine[0].prompts
    first, second = sdxl_base.spec.encoder_token_dims
    vector = torch.randn(first + second, generator=torch.Generator().manual_seed(0))
    only_second = vector.clone()
    only_second[first:] = torch.randn(second, generator=torch.Generator().manual_seed(1))
    tokenized = [prompts.tokenize("a <dog-a> dog", ["<dog-a>"])] * 2
    features, pooled = prompts.encode_with_pooled(tokenized, [{"<dog-a>": vector}, {"<dog-a>": only_second}])
    clip_l, clip_g = features[..., : prompts.first.feature_dim], features[..., prompts.first.feature_dim :]
    assert torch.equal(clip_l[0], clip_l[1])
    assert not torch.allclose(clip_g[0], clip_g[1])
    assert not torch.allclose(pooled[0], pooled[1])


def test_sdxl_base_weights_and_tokenizers_are_never_written(engine_and_pristine, concepts):
    engine, pristine = engine_and_pristine
    pipe = engine.pipeline
    before = {k: v.clone() for k, v in engine.unet.state_dict().items()}
    tables = [e.get_input_embeddings().weight.clone() for e in (pipe.text_encoder, pipe.text_encoder_2)]
    engine.generate([_request("a <dog-a> dog", delta=concepts[0], steps=2)])
    for key, value in engine.unet.state_dict().items():
        assert torch.equal(value, before[key]), key
    for encoder, table in zip((pipe.text_encoder, pipe.text_encoder_2), tables, strict=True):
        assert torch.equal(encoder.get_input_embeddings().weight, table)
    assert len(pipe.tokenizer) == len(pristine.tokenizer) and len(pipe.tokenizer_2) == len(pristine.tokenizer_2)
