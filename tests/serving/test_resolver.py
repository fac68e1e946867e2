"""Request concept refs → one delta, without Ray: single, closed-form merge (cached), naive sum, errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from serving.concepts.merger import MultiConcept
from serving.concepts.observer import CacheStats
from serving.concepts.resolver import ConceptResolver
from serving.engine import DeltaEngine
from shared.auth import OPERATOR_TENANT, Caller
from shared.basemodel import BaseModel
from shared.errors import IncompatibleBase, InvalidArgument, NotFound
from shared.merge import closed_form_merge, naive_sum
from tests.support.synthetic import random_concept

OPERATOR = Caller(OPERATOR_TENANT)


def test_no_concept_is_the_base_model_and_one_is_its_own_delta(
    resolver: ConceptResolver, publish: Any, spec: Any
) -> None:
    assert resolver.resolve([], OPERATOR).delta is None
    info = publish("res-one", seed=60)
    resolved = resolver.resolve(["res-one"], OPERATOR)
    _, expected = random_concept(spec, "res-one", seed=60)
    name = spec.layers[0].name
    assert resolved.refs == [f"res-one@{info.version}"] and resolved.modifier_tokens == ["<res-one>"]
    assert torch.equal(resolved.delta.layers[name]["to_k"].dense, expected.layers[name]["to_k"].dense)
    resolved.release()


def test_several_concepts_are_merged_once_per_set(
    resolver: ConceptResolver, publish: Any, spec: Any, tiny_base: BaseModel
) -> None:
    publish("res-a", seed=61)
    publish("res-b", seed=62)
    first = resolver.resolve(["res-a", "res-b"], OPERATOR)
    second = resolver.resolve(["res-b@1", "res-a"], OPERATOR)
    assert second.delta is first.delta
    stats = resolver.store.observer
    assert isinstance(stats, CacheStats) and stats.merges == 1 and stats.hits["merged"] == 1
    inputs = [random_concept(spec, c, seed=s) for c, s in (("res-a", 61), ("res-b", 62))]
    regularization = resolver.merger.regularization()
    expected, _ = closed_form_merge(
        inputs, DeltaEngine(tiny_base).prompts, DeltaEngine(tiny_base).layers, regularization
    )
    name = spec.layers[0].name
    got, want = first.delta.layers[name]["to_v"].to_dense(), expected.layers[name]["to_v"].to_dense()
    assert torch.allclose(got, want, atol=1e-5)
    summed = resolver.resolve(["res-a", "res-b"], OPERATOR, MultiConcept.NAIVE_SUM)
    summed_v = summed.delta.layers[name]["to_v"].to_dense()
    assert torch.allclose(summed_v, naive_sum(inputs).layers[name]["to_v"].to_dense())
    for r in (first, second, summed):
        r.release()


@pytest.mark.parametrize(
    "refs",
    [
        ["Bad Id"],
        ["dog@0"],
        ["dog@x"],
        ["dog", "dog@2"],
        ["dog@99999999999999999999"],
        ["dog@9223372036854775808"],
        ["dog@²"],
        ["dog@٣"],
        ["dog\n"],
        ["dog@1\n"],
    ],
)
def test_malformed_refs_name_the_concepts_field(resolver: ConceptResolver, refs: list[str]) -> None:
    with pytest.raises(InvalidArgument) as caught:
        resolver.resolve(refs, OPERATOR)
    assert caught.value.field == "concepts"


def test_an_unknown_concept_is_not_found_before_anything_loads(resolver: ConceptResolver, publish: Any) -> None:
    publish("res-known", seed=63)
    with pytest.raises(NotFound):
        resolver.resolve(["res-known", "res-unknown@1"], OPERATOR)
    assert resolver.store.resident_bytes()["device"] == 0


def test_a_member_failing_to_load_leaves_nothing_pinned(
    resolver: ConceptResolver, publish: Any, foreign_spec: Any
) -> None:
    publish("res-loaded", seed=64)
    publish("res-foreign", seed=65, base=foreign_spec)
    with pytest.raises(IncompatibleBase):
        resolver.resolve(["res-loaded", "res-foreign"], OPERATOR)
    assert resolver.store.resident_bytes()["device"] > 0
    key = resolver.store.resolve("res-loaded", None)
    assert resolver.store.pins(key) == 0  # the partial lease was released
