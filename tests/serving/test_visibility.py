"""Concepts resolve with the caller's visibility, over one cache shared by every tenant (no Ray).

A tenant's private concept is usable by that tenant and the operator; anyone else gets NOT_FOUND
worded exactly like a concept that never existed. Tenants come from `tests.registry.conftest.TOKENS`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from serving.concepts.observer import CacheStats
from serving.concepts.resolver import ConceptResolver
from shared.artifact import to_bytes
from shared.auth import OPERATOR_TENANT, Caller
from shared.basemodel import BaseSpec
from shared.errors import NotFound
from shared.registry_client import RegistryClient
from tests.registry.conftest import ServerThread
from tests.support.synthetic import random_concept

ACME, BETA, OPERATOR, ANONYMOUS = Caller("acme"), Caller("beta"), Caller(OPERATOR_TENANT), Caller()


@pytest.fixture(scope="module")
def acme(registry: ServerThread) -> Iterator[RegistryClient]:
    with registry.client("tok-acme") as client:
        yield client


def publish_as(client: RegistryClient, spec: BaseSpec, concept_id: str, *, seed: int, public: bool = False) -> Any:
    artifact = to_bytes(*random_concept(spec, concept_id, seed=seed))
    return client.publish(artifact, public=public).concept


def not_found_message(resolver: ConceptResolver, ref: str, caller: Caller) -> str:
    with pytest.raises(NotFound) as caught:
        resolver.resolve([ref], caller)
    return caught.value.message


def test_a_private_concept_is_its_tenants_and_the_operators_only(
    resolver: ConceptResolver, acme: RegistryClient, spec: BaseSpec
) -> None:
    publish_as(acme, spec, "vis-private", seed=70)
    for caller in (ACME, OPERATOR):
        for ref in ("vis-private", "vis-private@1"):
            resolved = resolver.resolve([ref], caller)
            assert resolved.refs == ["vis-private@1"]
            resolved.release()
    for caller in (BETA, ANONYMOUS):
        for ref in ("vis-private", "vis-private@1"):
            assert not_found_message(resolver, ref, caller)


def test_another_tenants_concept_reads_exactly_like_an_unknown_one(
    resolver: ConceptResolver, acme: RegistryClient, spec: BaseSpec
) -> None:
    publish_as(acme, spec, "vis-secret", seed=71)
    resolver.resolve(["vis-secret"], ACME).release()  # resident now: the answer must not change
    for ref, unknown in (("vis-secret", "vis-absent"), ("vis-secret@1", "vis-absent@1")):
        hidden = not_found_message(resolver, ref, BETA)
        missing = not_found_message(resolver, unknown, BETA)
        missing_for_owner = not_found_message(resolver, unknown, ACME)
        assert hidden.replace("vis-secret", "X") == missing.replace("vis-absent", "X")
        assert hidden.replace("vis-secret", "X") == missing_for_owner.replace("vis-absent", "X")


def test_public_concepts_are_everyones(resolver: ConceptResolver, acme: RegistryClient, spec: BaseSpec) -> None:
    publish_as(acme, spec, "vis-public", seed=72, public=True)
    for caller in (ACME, BETA, ANONYMOUS, OPERATOR):
        resolved = resolver.resolve(["vis-public"], caller)
        assert resolved.refs == ["vis-public@1"]
        resolved.release()


def test_every_member_of_a_merged_set_is_checked(
    resolver: ConceptResolver, acme: RegistryClient, spec: BaseSpec
) -> None:
    publish_as(acme, spec, "vis-mix-public", seed=73, public=True)
    publish_as(acme, spec, "vis-mix-private", seed=74)
    merged = resolver.resolve(["vis-mix-public", "vis-mix-private"], ACME)  # the merged set is cached now
    merged.release()
    for refs in (["vis-mix-public", "vis-mix-private"], ["vis-mix-private@1", "vis-mix-public"]):
        with pytest.raises(NotFound, match="vis-mix-private"):
            resolver.resolve(refs, BETA)
    key = resolver.store.resolve("vis-mix-private", None)
    assert resolver.store.pins(key) == 0  # nothing left pinned by the refused requests


def test_the_cache_is_shared_and_visibility_is_checked_per_request(
    resolver: ConceptResolver, acme: RegistryClient, spec: BaseSpec
) -> None:
    publish_as(acme, spec, "vis-shared", seed=75)
    stats = resolver.store.observer
    assert isinstance(stats, CacheStats)
    resolver.resolve(["vis-shared"], ACME).release()
    fetched = stats.hits["registry"]
    with pytest.raises(NotFound):
        resolver.resolve(["vis-shared"], BETA)
    resolver.resolve(["vis-shared"], OPERATOR).release()
    resolver.resolve(["vis-shared"], ACME).release()
    assert stats.hits["registry"] == fetched and stats.hits["device"] >= 2  # one fetch served all


def test_id_alone_is_the_latest_version_the_caller_may_see_as_the_registry_answers(
    resolver: ConceptResolver, acme: RegistryClient, registry: ServerThread, spec: BaseSpec
) -> None:
    publish_as(acme, spec, "vis-layers", seed=76, public=True)
    publish_as(acme, spec, "vis-layers", seed=77)  # the newer version is private
    with registry.client("tok-beta") as beta:
        assert beta.get("vis-layers").version == 1
    for caller, expected in ((ACME, "vis-layers@2"), (BETA, "vis-layers@1"), (ANONYMOUS, "vis-layers@1")):
        resolved = resolver.resolve(["vis-layers"], caller)
        assert resolved.refs == [expected]
        resolved.release()
    assert not_found_message(resolver, "vis-layers@2", BETA)
    publish_as(acme, spec, "vis-layers", seed=78, public=True)
    resolver.store.apply_event(True, "vis-layers", 3)  # what the replica's watch does
    resolved = resolver.resolve(["vis-layers"], BETA)
    assert resolved.refs == ["vis-layers@3"]
    resolved.release()
