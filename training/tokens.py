"""Modifier-token initialisation: each V* starts from the embedding of a rarely used existing token.

The paper initialises V* from a rare token rather than at random, so that it starts inside the
embedding distribution without carrying a strong meaning. A BPE learns its merges in order of pair
frequency, so the whole-word tokens merged last (highest ids) are the least frequent ones of the
tokenizer's training corpus; the choice walks the vocabulary from the highest id down, skipping
words the run's own captions use, and gives every concept a different token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from transformers import CLIPTextModel, CLIPTokenizer

from shared.errors import InvalidArgument

WORD_TOKEN = re.compile(r"([a-z]{3,})</w>")


def rare_tokens(tokenizer: CLIPTokenizer, count: int, *, avoid: Iterable[str] = ()) -> list[str]:
    """`count` distinct whole-word tokens, rarest first, none of them in `avoid` (lower-cased words)."""
    avoided = {word.lower() for word in avoid}
    chosen: list[str] = []
    if count == 0:
        return chosen
    for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: -item[1]):
        match = WORD_TOKEN.fullmatch(token)
        if match and match.group(1) not in avoided:
            chosen.append(match.group(1))
            if len(chosen) == count:
                return chosen
    raise InvalidArgument(f"the tokenizer has fewer than {count} usable initializer words", field="initializer_token")


def single_token_id(tokenizer: CLIPTokenizer, word: str) -> int:
    """The id of `word` when the tokenizer keeps it as one token (else the embedding would be a blend)."""
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise InvalidArgument(
            f"initializer_token {word!r} is {len(ids)} tokens for this tokenizer; choose a word that is one token",
            field="initializer_token",
        )
    return int(ids[0])


def initializer_words(tokenizer: CLIPTokenizer, explicit: Sequence[str | None], *, avoid: Iterable[str]) -> list[str]:
    """One initializer word per concept: the explicit ones, the others chosen by `rare_tokens`."""
    fixed = [word for word in explicit if word]
    automatic = iter(rare_tokens(tokenizer, len(explicit) - len(fixed), avoid=[*avoid, *fixed]))
    words = [word or next(automatic) for word in explicit]
    if len(set(words)) != len(words):
        raise InvalidArgument(
            f"initializer tokens {words} repeat; each concept needs its own", field="initializer_token"
        )
    return words


def initial_embeddings(
    tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, words: Sequence[str]
) -> list[torch.Tensor]:
    """Copies (dim,) fp32 of the words' embedding rows; the table itself is never touched."""
    table = text_encoder.get_input_embeddings().weight
    return [table[single_token_id(tokenizer, word)].detach().float().clone() for word in words]


def initial_token_embeddings(pipeline: Any, words: Sequence[str]) -> list[torch.Tensor]:
    """One start vector per word: its embedding row, or on SDXL the rows of both text encoders
    concatenated in encoder order (the word must be one token for both tokenizers)."""
    tables = [(pipeline.tokenizer, pipeline.text_encoder)]
    if getattr(pipeline, "text_encoder_2", None) is not None:
        tables.append((pipeline.tokenizer_2, pipeline.text_encoder_2))
    per_encoder = [initial_embeddings(tokenizer, encoder, words) for tokenizer, encoder in tables]
    return [torch.cat(rows) for rows in zip(*per_encoder, strict=True)]


def caption_words(captions: Iterable[str]) -> set[str]:
    return {word for caption in captions for word in re.findall(r"[a-z]+", caption.lower())}
