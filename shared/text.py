"""Prompt encoding with per-call modifier-token embeddings — no tokenizer or model mutation.

Modifier tokens (`<cd-dog>`) are not in the base vocabulary. Each call splits the prompt on the
tokens it was given, tokenizes the plain segments with the base tokenizer, puts a placeholder id
where each modifier token stands and, during that call only, replaces the placeholder positions'
embeddings with the given vectors (a forward hook on the token embedding reads a ContextVar, so
concurrent calls never see each other's tokens). The result equals stock diffusers after
`tokenizer.add_tokens` + resizing the embedding table + writing the new rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from transformers import CLIPTextModel, CLIPTokenizer

from shared.errors import InvalidArgument

MODIFIER_TOKEN_IN_TEXT = re.compile(r"<[a-z0-9][a-z0-9._-]{0,62}>")

_OVERRIDES: ContextVar[tuple[torch.Tensor, torch.Tensor] | None] = ContextVar("cdserve_token_overrides", default=None)
_HOOKED_ATTR = "_cdserve_override_hook"


@dataclass(frozen=True)
class TokenizedPrompt:
    """input_ids (tokens,) padded to the tokenizer's max length; where each modifier token sits."""

    input_ids: torch.Tensor
    token_positions: tuple[tuple[int, str], ...]
    length: int  # tokens up to and including end-of-text


class PromptEncoder:
    """Turns prompts (with modifier tokens) into text features `(batch, tokens, dim)`."""

    def __init__(self, tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.max_length = int(tokenizer.model_max_length)
        self.placeholder_id = int(tokenizer.bos_token_id)
        embedding = text_encoder.get_input_embeddings()
        if not getattr(embedding, _HOOKED_ATTR, False):
            embedding.register_forward_hook(_replace_overridden_rows)
            setattr(embedding, _HOOKED_ATTR, True)

    def tokenize(self, prompt: str, modifier_tokens: Sequence[str] = ()) -> TokenizedPrompt:
        """Tokenize like the stock pipeline: bos, tokens (truncated), eos, padding to max length."""
        known = set(modifier_tokens)
        ids: list[int] = []
        positions: list[tuple[int, str]] = []
        cursor = 0
        for match in MODIFIER_TOKEN_IN_TEXT.finditer(prompt):
            if match.group(0) not in known:
                continue
            ids += self._plain_ids(prompt[cursor : match.start()])
            positions.append((len(ids) + 1, match.group(0)))
            ids.append(self.placeholder_id)
            cursor = match.end()
        ids += self._plain_ids(prompt[cursor:])
        unknown = sorted(set(MODIFIER_TOKEN_IN_TEXT.findall(prompt)) - known)
        if unknown:
            raise InvalidArgument(
                f"prompt names modifier token(s) {unknown} but no requested concept provides them; "
                "add the concept to the request or remove the token",
                field="prompt",
            )
        body = ids[: self.max_length - 2]
        positions = [(pos, tok) for pos, tok in positions if pos <= len(body)]
        full = [self.tokenizer.bos_token_id, *body, self.tokenizer.eos_token_id]
        length = len(full)
        full += [self.tokenizer.pad_token_id] * (self.max_length - length)
        return TokenizedPrompt(torch.tensor(full, dtype=torch.long), tuple(positions), length)

    def _plain_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids) if text.strip() else []

    def encode(
        self,
        prompts: Sequence[TokenizedPrompt],
        embeddings: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Text features `(batch, max_length, dim)` in the encoder's dtype.

        Modifier positions take their vector from `embeddings`: one mapping for every prompt, or one
        mapping per prompt (so two versions of one concept can share a batch). Gradients flow into
        the vectors (training optimises them through this very path).
        """
        with self.overriding(prompts, embeddings) as input_ids:
            return self.text_encoder(input_ids)[0]

    @property
    def feature_dim(self) -> int:
        """Width of the text features the UNet attends to."""
        return int(self.text_encoder.config.hidden_size)

    @contextmanager
    def overriding(
        self,
        prompts: Sequence[TokenizedPrompt],
        embeddings: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]] | None = None,
    ) -> Iterator[torch.Tensor]:
        """input_ids `(batch, max_length)` on the encoder's device; while the block runs, the modifier
        positions' token embeddings are replaced (see `encode` for `embeddings`)."""
        device = self.text_encoder.device
        input_ids = torch.stack([p.input_ids for p in prompts]).to(device)
        per_prompt = embeddings if isinstance(embeddings, Sequence) else [embeddings or {}] * len(prompts)
        rows, cols, vectors = [], [], []
        for row, (prompt, table) in enumerate(zip(prompts, per_prompt, strict=True)):
            for col, token in prompt.token_positions:
                rows.append(row)
                cols.append(col)
                vectors.append(table[token])
        with _overrides(rows, cols, vectors, device):
            yield input_ids


@contextmanager
def _overrides(rows: list[int], cols: list[int], vectors: list[torch.Tensor], device: torch.device) -> Iterator[None]:
    if not vectors:
        token = _OVERRIDES.set(None)
    else:
        index = torch.tensor([rows, cols], dtype=torch.long, device=device)
        token = _OVERRIDES.set((index, torch.stack([v.to(device) for v in vectors])))
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


def _replace_overridden_rows(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    current = _OVERRIDES.get()
    if current is None:
        return output
    index, vectors = current
    output = output.clone()
    output[index[0], index[1]] = vectors.to(output.dtype)
    return output
