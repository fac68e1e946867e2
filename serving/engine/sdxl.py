"""The delta engine on SDXL: both text encoders, pooled embeddings and time ids per request.

Everything per request that SD 1.x does not have is UNet conditioning per row, so SDXL requests
with different concepts, prompts and sizes share one UNet batch like SD 1.x ones: the K/V set-up,
the attention processor and the denoising loop are `DeltaEngine`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import torch

from serving.engine.engine import DeltaEngine
from serving.engine.request import GenerationRequest
from shared.basemodel import BaseModel
from shared.sdxl import DualPromptEncoder, add_time_ids
from shared.text import PromptEncoder


class SDXLDeltaEngine(DeltaEngine):
    """`DeltaEngine` for an SDXL base (`StableDiffusionXLPipeline`)."""

    size_conditioning = True

    def __init__(self, base: BaseModel, *, compile: bool = False) -> None:
        super().__init__(base, compile=compile)
        pipe = base.pipeline
        # DualPromptEncoder has PromptEncoder's interface (tokenize, encode, feature_dim): the base engine,
        # the merge and K/V set-up use it unchanged
        self.prompts = cast(
            PromptEncoder,
            DualPromptEncoder(pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2, pipe.text_encoder_2),
        )
        self.zero_empty_negative = bool(pipe.config.force_zeros_for_empty_prompt)
        if self.vae.dtype == torch.float16 and self.vae.config.force_upcast:
            # SDXL's VAE overflows in fp16; stock diffusers upcasts it for every decode, we once.
            self.vae.to(torch.float32)

    def _encode(self, requests: Sequence[GenerationRequest]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Features (2R, tokens, d1 + d2), pooled `text_embeds` (2R, proj) and `time_ids` (2R, 6).

        As in stock diffusers: a request without a negative prompt gets zero features and a zero
        pooled embedding as its unconditional input (`force_zeros_for_empty_prompt`), and its
        unconditional rows share the conditional rows' time ids.
        """
        tokenized, tables = self._tokenize(requests)
        features, pooled = cast(DualPromptEncoder, self.prompts).encode_with_pooled(tokenized, tables)
        if self.zero_empty_negative:
            empty = [r for r, request in enumerate(requests) if not request.negative_prompt]
            features[empty] = 0.0
            pooled[empty] = 0.0
        dtype = self.unet.dtype
        time_ids = torch.tensor([_time_ids(r) for r in requests] * 2, dtype=dtype, device=features.device)
        return features.to(dtype), {"text_embeds": pooled.to(dtype), "time_ids": time_ids}

    def _decode(self, latents: torch.Tensor) -> np.ndarray:
        return super()._decode(latents.to(self.vae.dtype))


def _time_ids(request: GenerationRequest) -> list[int]:
    size = (request.height, request.width)
    return add_time_ids(request.original_size or size, request.crop_top_left, request.target_size or size)
