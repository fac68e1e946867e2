"""Closed-form merge (Eq. 4–5): constraints hold on target tokens, generic captions barely move,
the result is low-rank, and it beats the naive sum on both."""

from __future__ import annotations

import pytest
import torch

from shared.basemodel import cross_attention_layers
from shared.delta import DeltaWeight
from shared.errors import Conflict, InvalidArgument
from shared.merge import (
    RegularizationCache,
    closed_form_merge,
    load_captions,
    naive_sum,
    regularization_stats,
)
from shared.text import PromptEncoder
from tests.support.synthetic import random_concept


@pytest.fixture(scope="module")
def setup(tiny_base):
    pipe = tiny_base.pipeline
    encoder = PromptEncoder(pipe.tokenizer, pipe.text_encoder)
    layers = cross_attention_layers(pipe.unet)
    stats = regularization_stats(encoder, load_captions())
    dog = random_concept(tiny_base.spec, "dog", seed=1, rank=2, modifier_token="<dog>", scale=0.5)
    cat = random_concept(tiny_base.spec, "cat", seed=2, rank=2, modifier_token="<cat>", category="cat", scale=0.5)
    return encoder, layers, stats, [dog, cat]


def _generic_change(delta: torch.Tensor, w0: torch.Tensor, gram: torch.Tensor) -> float:
    """‖ΔW C_regᵀ‖ / ‖W0 C_regᵀ‖."""
    return (torch.trace(delta @ gram @ delta.T).sqrt() / torch.trace(w0 @ gram @ w0.T).sqrt()).item()


def test_merge_satisfies_constraints_and_keeps_generic_outputs(setup):
    encoder, layers, stats, concepts = setup
    merged, report = closed_form_merge(concepts, encoder, layers, stats)
    summed = naive_sum(concepts)
    assert report.max_constraint_residual < 1e-3
    for name, attn in layers.items():
        for projection in ("to_k", "to_v"):
            w0 = getattr(attn, projection).weight.double()
            ours = report.regularization_residual[f"{name}.{projection}"]
            assert ours == pytest.approx(
                _generic_change(merged.layers[name][projection].to_dense().double(), w0, stats.gram), rel=1e-6
            )
            baseline = _generic_change(summed.layers[name][projection].to_dense().double(), w0, stats.gram)
            assert ours < 0.35 * baseline
    assert set(merged.token_embeddings) == {"<dog>", "<cat>"}
    for layer in merged.layers.values():
        for weight in layer.values():
            assert weight.is_low_rank and weight.rank <= report.num_target_tokens
            assert torch.linalg.matrix_rank(weight.to_dense().double(), rtol=1e-5) <= report.num_target_tokens


def test_merge_is_the_optimum_among_weights_meeting_the_constraints(setup):
    """Moving the merged weights along any direction that keeps W Cᵀ fixed only increases the objective."""
    encoder, layers, stats, concepts = setup
    merged, _ = closed_form_merge(concepts, encoder, layers, stats, ridge=0.0)
    rows = []
    for header, delta in concepts:
        tokenized = encoder.tokenize(header.concepts[0].captions[0], list(delta.token_embeddings))
        features = encoder.encode([tokenized], delta.token_embeddings)[0].double()
        position = tokenized.token_positions[0][0]
        rows.append(features[position : tokenized.length])
    targets = torch.cat(rows)
    null_space = torch.linalg.svd(targets, full_matrices=True).Vh[targets.shape[0] :]  # rows ⟂ every target
    name = next(iter(layers))
    w0 = layers[name].to_k.weight.double()
    best = merged.layers[name]["to_k"].to_dense().double()
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        direction = torch.randn(w0.shape[0], null_space.shape[0], generator=generator, dtype=torch.float64) @ null_space
        assert (direction @ targets.T).abs().max() < 1e-8
        assert _generic_change(best + 0.05 * direction, w0, stats.gram) > _generic_change(best, w0, stats.gram)


def test_naive_sum_breaks_the_constraints_the_merge_keeps(setup):
    encoder, layers, stats, concepts = setup
    merged, _ = closed_form_merge(concepts, encoder, layers, stats)
    summed = naive_sum(concepts)
    name = next(iter(layers))
    dog_header, dog_delta = concepts[0]
    tokenized = encoder.tokenize(dog_header.concepts[0].captions[0], ["<dog>"])
    position = tokenized.token_positions[0][0]
    features = encoder.encode([tokenized], dog_delta.token_embeddings)[0].double()[position : tokenized.length]
    own = dog_delta.layers[name]["to_k"].to_dense().double() @ features.T
    merged_err = (merged.layers[name]["to_k"].to_dense().double() @ features.T - own).norm() / own.norm()
    summed_err = (summed.layers[name]["to_k"].to_dense().double() @ features.T - own).norm() / own.norm()
    assert merged_err < 1e-3 < summed_err


def test_regularization_stats_are_cached_on_disk(setup, tmp_path):
    encoder, *_ = setup
    cache = RegularizationCache(tmp_path)
    captions = load_captions()[:50]
    first = cache.get("fp", encoder, captions)
    assert list(tmp_path.glob("creg-fp-*.safetensors"))
    again = RegularizationCache(tmp_path).get("fp", encoder, captions)
    assert torch.equal(first.gram, again.gram)
    assert len(load_captions()) >= 1000


def test_shared_modifier_token_is_a_conflict(setup, tiny_base):
    encoder, layers, stats, concepts = setup
    twin = random_concept(tiny_base.spec, "dog2", seed=3, rank=2, modifier_token="<dog>")
    with pytest.raises(Conflict, match="<dog>"):
        closed_form_merge([concepts[0], twin], encoder, layers, stats)


def test_query_deltas_cannot_be_merged(setup):
    encoder, layers, stats, concepts = setup
    header, delta = concepts[0]
    name = next(iter(delta.layers))
    weight = delta.layers[name]["to_k"]
    crossattn = type(delta)(
        layers={name: {"to_q": DeltaWeight(dense=torch.zeros(weight.shape[0], 32))}},
        token_embeddings=delta.token_embeddings,
    )
    with pytest.raises(InvalidArgument, match="to_q"):
        closed_form_merge([(header, crossattn), concepts[1]], encoder, layers, stats)


def test_more_target_tokens_than_text_dimensions_is_logged_as_a_compromise(setup, tiny_base, caplog):
    """Long captions give more constraint rows than the tiny text space is wide: no exact solution."""
    encoder, layers, stats, _ = setup
    width = tiny_base.pipeline.text_encoder.config.hidden_size
    tails = [
        "on a white background",
        "and a red circle on a pink background",
        "in the snow",
        "near a tall tree",
        "and a small blue square beside a large green star on a black background",
    ]
    concepts = []
    for seed, (token, category) in enumerate((("<dog>", "dog"), ("<cat>", "cat")), start=5):
        header, delta = random_concept(tiny_base.spec, category, seed=seed, modifier_token=token, category=category)
        part = header.concepts[0].model_copy(update={"captions": [f"photo of a {token} {category} {t}" for t in tails]})
        concepts.append((header.model_copy(update={"concepts": [part]}), delta))
    with caplog.at_level("WARNING", logger="shared.merge"):
        _, report = closed_form_merge(concepts, encoder, layers, stats)
    assert report.num_target_tokens > width and report.max_constraint_residual > 1e-2
    assert "least-squares compromise" in caplog.text and "'dog', 'cat'" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="shared.merge"):
        closed_form_merge(setup[3], encoder, layers, stats)  # short captions: exact, nothing logged
    assert caplog.text == ""
