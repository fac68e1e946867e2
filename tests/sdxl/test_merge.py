"""The closed-form merge on SDXL: 2048-d-shaped features (both encoders, concatenated) for the
targets and the regularisation set, cached per base; the merged set serves through the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serving.engine import GenerationRequest, create_engine
from shared.merge import RegularizationCache, closed_form_merge, load_captions, naive_sum
from tests.support.synthetic import random_concept

CAPTIONS = load_captions()[:200]


@pytest.fixture(scope="module")
def engine(sdxl_base):
    return create_engine(sdxl_base)


@pytest.fixture(scope="module")
def concepts(sdxl_base):
    dog = random_concept(sdxl_base.spec, "dog", seed=1, rank=2, modifier_token="<dog>", scale=0.5)
    cat = random_concept(sdxl_base.spec, "cat", seed=2, rank=2, modifier_token="<cat>", category="cat", scale=0.5)
    return [dog, cat]


def test_regularization_features_come_from_both_encoders_and_are_cached_per_base(engine, sdxl_base, tmp_path):
    cache = RegularizationCache(tmp_path)
    stats = cache.get(sdxl_base.spec.fingerprint, engine.prompts, CAPTIONS)
    width = sdxl_base.spec.layers[0].in_features
    assert stats.gram.shape == (width, width)
    clip_l_dim = engine.prompts.first.feature_dim
    assert stats.gram[:clip_l_dim, clip_l_dim:].abs().max() > 0  # clip_l × clip_g covariance: both are there
    assert [p.name for p in tmp_path.iterdir()] == [
        f"creg-{sdxl_base.spec.fingerprint}-" + p.name.rsplit("-", 1)[1] for p in tmp_path.iterdir()
    ]
    reloaded = RegularizationCache(tmp_path).get(sdxl_base.spec.fingerprint, engine.prompts, CAPTIONS)
    assert torch.equal(reloaded.gram, stats.gram)


def test_sdxl_merge_keeps_each_concepts_outputs_on_its_own_tokens(engine, sdxl_base, concepts):
    stats = RegularizationCache().get(sdxl_base.spec.fingerprint, engine.prompts, CAPTIONS)
    # Every direction kept: on the tiny random encoders two of the six target features are nearly
    # collinear, and the default cutoff would trade that constraint for smaller generic changes.
    merged, report = closed_form_merge(concepts, engine.prompts, engine.layers, stats, eigen_cutoff=1e-9)
    assert report.max_constraint_residual < 1e-3
    assert set(merged.token_embeddings) == {"<dog>", "<cat>"}
    summed = naive_sum(concepts)
    for name, layer in merged.layers.items():
        for projection, weight in layer.items():
            assert weight.shape[1] == engine.prompts.feature_dim and weight.rank <= report.num_target_tokens
            change = summed.layers[name][projection].to_dense().double()
            w0 = getattr(engine.layers[name], projection).weight.double()
            naive = (torch.trace(change @ stats.gram @ change.T) / torch.trace(w0 @ stats.gram @ w0.T)).sqrt()
            assert report.regularization_residual[f"{name}.{projection}"] < naive.item()
    # Each concept's caption served with the merged set stays closer to the concept alone than with
    # the naive sum of both deltas.
    for header, delta in concepts:
        caption = header.concepts[0].captions[0]
        alone, with_merge, with_sum = engine.generate(
            [GenerationRequest(caption, delta=d, steps=2, height=16, width=16, seed=3) for d in (delta, merged, summed)]
        )
        assert np.abs(with_merge.images - alone.images).max() < np.abs(with_sum.images - alone.images).max()
