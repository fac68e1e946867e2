"""The engine's per-request K/V on the real SDXL UNet (random fp32 weights, 8×8 latents): 70
cross-attention layers over 2048-d features, SDXL's pooled embedding and time ids, one CFG pair
through the delta processors equal to the same UNet with the concept's weights written in.

The UNet's 2.6 B fp32 parameters take about 10 GiB of host memory: the module builds it once and
patches it in place (then restores it) rather than holding a second copy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from diffusers import UNet2DConditionModel

from serving.engine.conditioning import RowLayout, build_conditioning
from serving.engine.processor import bound, install_delta_processors
from shared.basemodel import BaseSpec, cross_attention_layers, layer_map
from shared.delta import ConceptDelta
from tests.support.synthetic import random_concept
from tests.support.tiny_sdxl import SDXL_UNET_CONFIG, build_sdxl_unet_random

pytestmark = pytest.mark.slow
TOKENS, POOLED = 77, 1280


@pytest.fixture(scope="module")
def sdxl_unet() -> tuple[UNet2DConditionModel, BaseSpec]:
    unet = build_sdxl_unet_random(seed=0)
    spec = BaseSpec(fingerprint="sdxl-random", layers=layer_map(unet), token_dim=2048)
    return unet, spec


@contextmanager
def patched(unet: UNet2DConditionModel, delta: ConceptDelta) -> Iterator[None]:
    """W0 + ΔW written into the K/V projections in place, then ΔW taken off again (the base comes
    back within one rounding of each weight; no copy of the 1.4 GB of K/V weights is kept)."""
    layers = cross_attention_layers(unet)
    for name, projections in delta.layers.items():
        for projection, weight in projections.items():
            getattr(layers[name], projection).weight.add_(weight.to_dense())
    try:
        yield
    finally:
        for name, projections in delta.layers.items():
            for projection, weight in projections.items():
                getattr(layers[name], projection).weight.sub_(weight.to_dense())


@torch.no_grad()
def test_a_cfg_pair_through_the_delta_processors_equals_the_patched_sdxl_unet(sdxl_unet):
    unet, spec = sdxl_unet
    assert len(spec.layers) == 70 and {layer.in_features for layer in spec.layers} == {2048}
    _, delta = random_concept(spec, "full", seed=3, rank=4, scale=0.5)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, TOKENS, SDXL_UNET_CONFIG["cross_attention_dim"], generator=generator)
    added = {
        "text_embeds": torch.randn(2, POOLED, generator=generator),
        "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024], [768, 1344, 64, 32, 1024, 1024]]),
    }
    latents = torch.randn(2, 4, 8, 8, generator=generator)
    t = torch.tensor(500)

    layers = cross_attention_layers(unet)
    conditioning = build_conditioning(layers, features, [delta], RowLayout([1]))
    stock = unet.attn_processors
    install_delta_processors(layers)
    try:
        with bound(conditioning):
            engine = unet(latents, t, encoder_hidden_states=features, added_cond_kwargs=added).sample
    finally:
        unet.set_attn_processor(stock)
    base = unet(latents, t, encoder_hidden_states=features, added_cond_kwargs=added).sample
    with patched(unet, delta):
        reference = unet(latents, t, encoder_hidden_states=features, added_cond_kwargs=added).sample

    assert engine.isfinite().all() and engine.std() > 0.1
    torch.testing.assert_close(engine, reference, atol=1e-4, rtol=1e-4)
    assert (engine - base).abs().max() > 100 * (engine - reference).abs().max()  # the concept changed the output
