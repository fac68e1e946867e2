"""CLIP BPE tokenizers trained by the project (no hub downloads).

Token ids depend on the training run, so a trained tokenizer is saved once and its files are
kept with the model that uses it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from transformers import CLIPTokenizer

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def train_clip_tokenizer(
    corpus: Iterable[str], out_dir: str | Path, *, vocab_size: int = 1000, model_max_length: int = 77
) -> CLIPTokenizer:
    """Train a lower-cased, whitespace-split BPE with CLIP's `</w>` suffix; save vocab.json + merges.txt.

    `model_max_length` must not exceed the text encoder's `max_position_embeddings`.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=EOS, end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[BOS, EOS], end_of_word_suffix="</w>", show_progress=False
    )
    tok.train_from_iterator(list(corpus), trainer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(out))
    return load_clip_tokenizer(out, model_max_length=model_max_length)


def load_clip_tokenizer(directory: str | Path, *, model_max_length: int = 77) -> CLIPTokenizer:
    directory = Path(directory)
    tokenizer = CLIPTokenizer(
        str(directory / "vocab.json"),
        str(directory / "merges.txt"),
        model_max_length=model_max_length,
        pad_token=EOS,
    )
    return tokenizer


def split_words(tokenizer: CLIPTokenizer, words: Iterable[str]) -> list[str]:
    """The words `tokenizer` does not keep as one token (a model's whole vocabulary should be empty here)."""
    return [word for word in words if len(tokenizer(word, add_special_tokens=False).input_ids) != 1]
