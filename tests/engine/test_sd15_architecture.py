"""The engine's mechanics on the real SD 1.5 architecture (random weights, 8×8 latents):
16 cross-attention layers, 768-d text features, per-request K/V in a mixed CFG batch equal to
patched weights, and the closed-form merge at full width."""

from __future__ import annotations

import pytest
import torch

from serving.engine.conditioning import RowLayout, build_conditioning
from serving.engine.processor import bound, install_delta_processors
from shared.basemodel import BaseSpec, cross_attention_layers, layer_map
from shared.merge import closed_form_merge, load_captions, regularization_stats
from shared.text import PromptEncoder
from shared.tiny import build_clip_l_text_encoder, build_sd15_unet, tiny_tokenizer
from tests.support.synthetic import random_concept

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sd15(device):
    tokenizer = tiny_tokenizer()
    tokenizer.model_max_length = 77
    unet = build_sd15_unet().eval().requires_grad_(False).to(device)
    text_encoder = build_clip_l_text_encoder(tokenizer).eval().requires_grad_(False).to(device)
    spec = BaseSpec(fingerprint="sd15-random", layers=layer_map(unet), token_dim=768)
    return unet, PromptEncoder(tokenizer, text_encoder), spec


def test_layer_map(sd15):
    _, _, spec = sd15
    assert len(spec.layers) == 16
    assert {layer.out_features for layer in spec.layers} == {320, 640, 1280}
    assert all(layer.in_features == 768 for layer in spec.layers)
    kv_params = sum(2 * layer.out_features * layer.in_features for layer in spec.layers)
    assert kv_params == 19_169_280


@torch.no_grad()
def test_mixed_batch_equals_patched_weights(sd15):
    unet, encoder, spec = sd15
    concepts = [None] + [
        random_concept(spec, f"c{i}", seed=i, rank=4 if i == 2 else None, modifier_token=f"<c{i}>", scale=0.05)[1].to(
            unet.device
        )
        for i in (1, 2)
    ]
    prompts = ["a photo of a dog", "a photo of a <c1> dog", "a <c2> cat"]
    texts = [""] * 3 + prompts  # [uncond r1..r3, cond r1..r3], each request with its own concept
    owners = concepts * 2
    features = encoder.encode(
        [encoder.tokenize(text, list(c.token_embeddings) if c else []) for text, c in zip(texts, owners, strict=True)],
        [c.token_embeddings if c else {} for c in owners],
    )
    layout = RowLayout([1, 1, 1])
    layers = cross_attention_layers(unet)
    conditioning = build_conditioning(layers, features, concepts, layout)
    install_delta_processors(layers)
    latents = torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(0)).to(unet.device)
    t = torch.tensor(500, device=unet.device)
    with bound(conditioning):
        batched = unet(latents, t, encoder_hidden_states=features[layout.feature_rows]).sample
    for r, delta in enumerate(concepts):
        rows = [r, 3 + r]
        with _patched(layers, delta):
            alone = unet(latents[rows], t, encoder_hidden_states=features[rows]).sample
        torch.testing.assert_close(batched[rows], alone, atol=2e-4, rtol=1e-4)


class _patched:
    """Temporarily write W0 + ΔW into the UNet (test-only reference)."""

    def __init__(self, layers, delta):
        self.layers, self.delta, self.saved = layers, delta, {}

    def __enter__(self):
        for name, projections in self.delta.layers.items() if self.delta else []:
            for projection, weight in projections.items():
                linear = getattr(self.layers[name], projection)
                self.saved[(name, projection)] = linear.weight.clone()
                linear.weight += weight.to_dense()

    def __exit__(self, *exc):
        for (name, projection), weight in self.saved.items():
            getattr(self.layers[name], projection).weight.copy_(weight)


def test_closed_form_merge_at_sd15_width(sd15):
    unet, encoder, spec = sd15
    stats = regularization_stats(encoder, load_captions()[:32])
    concepts = [
        random_concept(spec, n, seed=i, rank=2, modifier_token=f"<{n}>", category=n, scale=0.05)
        for i, n in enumerate(["dog", "cat"])
    ]
    merged, report = closed_form_merge(concepts, encoder, cross_attention_layers(unet), stats)
    assert len(merged.layers) == 16
    assert report.max_constraint_residual < 1e-3
    assert all(w.rank <= report.num_target_tokens for layer in merged.layers.values() for w in layer.values())
