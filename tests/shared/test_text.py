"""Prompt tokenization with modifier tokens matches stock `add_tokens` tokenization."""

import copy

import pytest
import torch

from shared.errors import InvalidArgument
from shared.text import PromptEncoder


@pytest.fixture(scope="module")
def encoder(tiny_base):
    return PromptEncoder(tiny_base.pipeline.tokenizer, tiny_base.pipeline.text_encoder)


@pytest.mark.parametrize(
    "prompt",
    [
        "a photo of a <dog-a> dog",
        "<dog-a> dog",
        "a <dog-a> and a <cat-b> on the beach",
        "<dog-a><cat-b>",
        "a very long caption " * 20 + "<dog-a> dog",
    ],
)
def test_ids_match_a_tokenizer_with_added_tokens(tiny_base, encoder, prompt):
    stock = copy.deepcopy(tiny_base.pipeline.tokenizer)
    stock.add_tokens(["<dog-a>", "<cat-b>"])
    expected = stock(prompt, padding="max_length", max_length=stock.model_max_length, truncation=True).input_ids
    ours = encoder.tokenize(prompt, ["<dog-a>", "<cat-b>"])
    added = {stock.convert_tokens_to_ids("<dog-a>"): "<dog-a>", stock.convert_tokens_to_ids("<cat-b>"): "<cat-b>"}
    positions = tuple((i, added[t]) for i, t in enumerate(expected) if t in added)
    assert ours.token_positions == positions
    plain = [encoder.placeholder_id if t in added else t for t in expected]
    assert ours.input_ids.tolist() == plain


def test_unknown_modifier_token_is_an_error(encoder):
    with pytest.raises(InvalidArgument, match="<cat-b>"):
        encoder.tokenize("a <cat-b> cat", ["<dog-a>"])


def test_embeddings_are_per_prompt(encoder, tiny_base):
    dim = tiny_base.spec.token_dim
    prompts = [encoder.tokenize("a <x> dog", ["<x>"])] * 2
    one, two = torch.zeros(dim), torch.ones(dim)
    features = encoder.encode(prompts, [{"<x>": one}, {"<x>": two}])
    assert not torch.allclose(features[0], features[1])
    same = encoder.encode(prompts, {"<x>": one})
    torch.testing.assert_close(same[0], features[0])
