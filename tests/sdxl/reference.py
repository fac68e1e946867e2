"""Stock `StableDiffusionXLPipeline` with a concept patched in: the reference the SDXL path must match
(sampled with `tests.engine.reference.stock_generate(..., patch=patched_sdxl_pipeline)`)."""

from __future__ import annotations

import copy

import torch
from diffusers import StableDiffusionXLPipeline

from shared.basemodel import cross_attention_layers
from shared.delta import ConceptDelta
from shared.sdxl import split_token_embedding


def patched_sdxl_pipeline(pipeline: StableDiffusionXLPipeline, delta: ConceptDelta | None) -> StableDiffusionXLPipeline:
    """A deep copy with W0 + ΔW written into the projections and every modifier token added to BOTH
    tokenizers and embedding tables (its first part to CLIP-L, the rest to OpenCLIP-G)."""
    patched = copy.deepcopy(pipeline)
    patched.set_progress_bar_config(disable=True)
    if delta is None:
        return patched
    layers = cross_attention_layers(patched.unet)
    encoders = ((patched.tokenizer, patched.text_encoder), (patched.tokenizer_2, patched.text_encoder_2))
    dims = [encoder.get_input_embeddings().embedding_dim for _, encoder in encoders]
    with torch.no_grad():
        for name, projections in delta.layers.items():
            for projection, weight in projections.items():
                linear = getattr(layers[name], projection)
                linear.weight += weight.to_dense().to(linear.weight.dtype)
        for index, (tokenizer, encoder) in enumerate(encoders):
            tokenizer.add_tokens(list(delta.token_embeddings))
            encoder.resize_token_embeddings(len(tokenizer))
            table = encoder.get_input_embeddings().weight
            for token, vector in delta.token_embeddings.items():
                table[tokenizer.convert_tokens_to_ids(token)] = split_token_embedding(vector, dims)[index]
    return patched
