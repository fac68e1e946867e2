"""Stock diffusers with a concept patched in: the reference the engine must match."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from shared.basemodel import cross_attention_layers
from shared.delta import ConceptDelta


def patched_pipeline(pipeline: StableDiffusionPipeline, delta: ConceptDelta | None) -> StableDiffusionPipeline:
    """A deep copy with W0 + ΔW written into the projections and the modifier tokens added
    to the tokenizer and embedding table — the way stock diffusers applies a Custom Diffusion concept."""
    patched = copy.deepcopy(pipeline)
    if delta is None:
        return patched
    layers = cross_attention_layers(patched.unet)
    with torch.no_grad():
        for name, projections in delta.layers.items():
            attn = layers[name]
            for projection, weight in projections.items():
                linear = attn.to_out[0] if projection == "to_out" else getattr(attn, projection)
                linear.weight += weight.to_dense().to(linear.weight.dtype)
        tokens = list(delta.token_embeddings)
        patched.tokenizer.add_tokens(tokens)
        patched.text_encoder.resize_token_embeddings(len(patched.tokenizer))
        table = patched.text_encoder.get_input_embeddings().weight
        for token in tokens:
            table[patched.tokenizer.convert_tokens_to_ids(token)] = delta.token_embeddings[token].to(table.dtype)
    return patched


def stock_generate(
    pipeline: StableDiffusionPipeline,
    delta: ConceptDelta | None,
    prompt: str,
    *,
    negative_prompt: str | None = "",
    seed: int,
    steps: int,
    guidance_scale: float,
    size: int,
    num_images: int = 1,
    patch: Callable[[Any, ConceptDelta | None], Any] = patched_pipeline,
    **pipeline_kwargs: Any,
) -> np.ndarray:
    """The pipeline's images with `delta` applied by `patch`; `pipeline_kwargs` go to the call as they are."""
    patched = patch(pipeline, delta)
    patched.set_progress_bar_config(disable=True)
    return patched(
        prompt,
        negative_prompt=negative_prompt,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        generator=torch.Generator("cpu").manual_seed(seed),
        height=size,
        width=size,
        num_images_per_prompt=num_images,
        output_type="np",
        **pipeline_kwargs,
    ).images
