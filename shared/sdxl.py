"""SDXL text conditioning: two text encoders, per-call modifier tokens in both, pooled embeddings
and the size/crop time ids — computed as `StableDiffusionXLPipeline.encode_prompt` and
`_get_add_time_ids` do, without mutating either tokenizer or encoder.

SDXL reads the penultimate hidden layer of CLIP ViT-L (768-d) and of OpenCLIP ViT-bigG (1280-d)
and concatenates them to 2048-d features; the UNet's `text_time` embedding adds the projected
pooled output of the second encoder and six numbers per image: original size, crop corner and
target size. A modifier token has one embedding per encoder; a `ConceptDelta` keeps them
concatenated in encoder order (`BaseSpec.token_dims` says where to split), so the merge, the
caches and naive sums treat them as one vector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from shared.errors import InvalidArgument
from shared.text import PromptEncoder, TokenizedPrompt

TEXT_ENCODER_NAMES = ("clip_l", "clip_g")
"""Names of a token's two embeddings in SDXL token files (the keys `load_textual_inversion` users
pick for `text_encoder` and `text_encoder_2`)."""

TokenTables = Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]] | None
"""One {modifier token: concatenated embedding} for every prompt, or one per prompt."""


@dataclass(frozen=True)
class DualTokenizedPrompt:
    """A prompt tokenized by both tokenizers (SDXL's share one vocabulary and differ in padding only)."""

    first: TokenizedPrompt
    second: TokenizedPrompt

    @property
    def token_positions(self) -> tuple[tuple[int, str], ...]:
        return self.first.token_positions

    @property
    def length(self) -> int:
        return self.first.length


class DualPromptEncoder:
    """Prompts (with modifier tokens) → SDXL features `(batch, tokens, d1 + d2)` and pooled `(batch, proj)`.

    The same interface as `PromptEncoder` (tokenize, encode, feature_dim), so the merge and the
    engine's K/V set-up work on SDXL unchanged.
    """

    def __init__(
        self,
        tokenizer: CLIPTokenizer,
        text_encoder: CLIPTextModel,
        tokenizer_2: CLIPTokenizer,
        text_encoder_2: CLIPTextModelWithProjection,
    ) -> None:
        self.first = PromptEncoder(tokenizer, text_encoder)
        self.second = PromptEncoder(tokenizer_2, text_encoder_2)
        self.token_dims = tuple(e.text_encoder.get_input_embeddings().embedding_dim for e in (self.first, self.second))

    @property
    def feature_dim(self) -> int:
        return self.first.feature_dim + self.second.feature_dim

    def tokenize(self, prompt: str, modifier_tokens: Sequence[str] = ()) -> DualTokenizedPrompt:
        return DualTokenizedPrompt(
            self.first.tokenize(prompt, modifier_tokens), self.second.tokenize(prompt, modifier_tokens)
        )

    def encode(self, prompts: Sequence[DualTokenizedPrompt], embeddings: TokenTables = None) -> torch.Tensor:
        return self.encode_with_pooled(prompts, embeddings)[0]

    def encode_with_pooled(
        self, prompts: Sequence[DualTokenizedPrompt], embeddings: TokenTables = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features `(batch, tokens, d1 + d2)` (penultimate layers, concatenated) and the second
        encoder's projected pooled output `(batch, proj)`, in the encoders' dtype. Gradients flow
        into the embeddings."""
        first_tables, second_tables = self._split(embeddings, len(prompts))
        with self.first.overriding([p.first for p in prompts], first_tables) as ids:
            first = self.first.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        with self.second.overriding([p.second for p in prompts], second_tables) as ids:
            output = self.second.text_encoder(ids, output_hidden_states=True)
        return torch.cat([first, output.hidden_states[-2].to(first.device)], dim=-1), output.text_embeds

    def _split(self, embeddings: TokenTables, count: int) -> tuple[list[dict], list[dict]]:
        tables = embeddings if isinstance(embeddings, Sequence) else [embeddings or {}] * count
        width = sum(self.token_dims)
        first, second = [], []
        for table in tables:
            for token, vector in table.items():
                if vector.shape != (width,):
                    raise InvalidArgument(
                        f"embedding of {token!r} has shape {tuple(vector.shape)}; SDXL needs ({width},): "
                        f"{self.token_dims[0]} for the first text encoder, then {self.token_dims[1]} for the second",
                        field="token_embeddings",
                    )
            first.append({t: v[: self.token_dims[0]] for t, v in table.items()})
            second.append({t: v[self.token_dims[0] :] for t, v in table.items()})
        return first, second


def prompt_encoder_for(pipeline: Any) -> PromptEncoder | DualPromptEncoder:
    """The prompt encoder of a base pipeline: both text encoders when it has two (SDXL)."""
    if getattr(pipeline, "text_encoder_2", None) is not None:
        return DualPromptEncoder(
            pipeline.tokenizer, pipeline.text_encoder, pipeline.tokenizer_2, pipeline.text_encoder_2
        )
    return PromptEncoder(pipeline.tokenizer, pipeline.text_encoder)


def split_token_embedding(vector: torch.Tensor, token_dims: Sequence[int]) -> list[torch.Tensor]:
    """A concatenated modifier-token embedding → one vector per text encoder."""
    return list(torch.split(vector, list(token_dims)))


def add_time_ids(
    original_size: tuple[int, int], crop_top_left: tuple[int, int], target_size: tuple[int, int]
) -> list[int]:
    """SDXL's micro-conditioning for one image: (orig h, orig w, crop top, crop left, target h, target w)."""
    return [*original_size, *crop_top_left, *target_size]
