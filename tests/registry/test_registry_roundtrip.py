"""Publish, get, fetch and list: bytes come back bit-exact, versions count up, refs pin."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.errors import InvalidArgument, NotFound
from shared.spec import BaseSpec, CrossAttentionLayer


def test_publish_get_fetch_round_trip_is_bit_exact(acme, make_artifact, spec):
    data = make_artifact("dog", category="dog")
    result = acme.publish(data, labels={"team": "vision"})

    concept = result.concept
    assert (concept.concept_id, concept.version, concept.tenant) == ("dog", 1, "acme")
    assert concept.sha256 == hashlib.sha256(data).hexdigest() and concept.size_bytes == len(data)
    assert concept.base_fingerprint == spec.fingerprint
    assert list(concept.modifier_tokens) == ["<dog>"] and list(concept.category_words) == ["dog"]
    assert (concept.delta_kind, concept.max_rank, concept.num_layers) == ("full", 0, len(spec.layers))
    assert json.loads(concept.header_json)["concept_id"] == "dog"
    assert dict(concept.labels) == {"team": "vision"} and not result.deduplicated
    assert acme.get("dog") == concept
    assert acme.fetch("dog") == data
    assert acme.fetch("dog@1") == data


def test_low_rank_concept_reports_its_rank(acme, make_artifact):
    concept = acme.publish(make_artifact("cat", rank=3)).concept
    assert (concept.delta_kind, concept.max_rank) == ("lowrank", 3)


def test_versions_count_up_and_refs_pin_them(acme, make_artifact):
    first, second = make_artifact("dog", seed=1), make_artifact("dog", seed=2)
    assert acme.publish(first).concept.version == 1
    assert acme.publish(second).concept.version == 2

    assert acme.get("dog").version == 2
    assert acme.fetch("dog") == second
    assert acme.fetch("dog@1") == first
    with pytest.raises(NotFound):
        acme.get("dog@3")


def test_the_same_bytes_published_again_are_a_new_version_stored_once(server, acme, make_artifact):
    data = make_artifact("dog")
    acme.publish(data)
    again = acme.publish(data, concept_id="dog")
    assert (again.concept.concept_id, again.concept.version, again.deduplicated) == ("dog", 2, True)
    assert len(list((server.config.data_dir / "sha256").glob("*/*"))) == 1


def test_an_artifact_is_published_under_its_own_id_only(server, acme, make_artifact):
    """The header is covered by the content digest and Fetch serves the file as it is: a stored
    header_json naming another id than the file would contradict the file."""
    with pytest.raises(InvalidArgument, match="the artifact is concept 'dog', not 'dog-copy'"):
        acme.publish(make_artifact("dog"), concept_id="dog-copy")
    published = acme.publish(make_artifact("dog"), concept_id="dog").concept
    assert json.loads(published.header_json)["concept_id"] == published.concept_id == "dog"
    assert list(acme.list()) == [published]


def test_concurrent_publishes_of_one_id_get_distinct_versions(server, make_artifact):
    artifacts = [make_artifact("dog", seed=seed) for seed in range(6)]

    def publish(data: bytes) -> int:
        with server.client("tok-acme") as client:
            return client.publish(data).concept.version

    with ThreadPoolExecutor(len(artifacts)) as pool:
        versions = list(pool.map(publish, artifacts))

    assert sorted(versions) == [1, 2, 3, 4, 5, 6]
    with server.client("tok-acme") as client:
        stored = {c.version: c.sha256 for c in client.list(all_versions=True)}
        for version, data in zip(versions, artifacts, strict=True):
            assert client.fetch(f"dog@{version}") == data
    assert len(stored) == 6


def test_list_pages_and_filters(acme, make_artifact):
    for index in range(5):
        acme.publish(make_artifact(f"dog-{index}", category="dog"))
    acme.publish(make_artifact("cat", category="cat"))
    acme.publish(make_artifact("cat", seed=1, category="cat"))

    assert [c.concept_id for c in acme.list(page_size=2)] == ["cat", *(f"dog-{i}" for i in range(5))]
    assert [(c.concept_id, c.version) for c in acme.list(id_prefix="cat", all_versions=True)] == [
        ("cat", 2),
        ("cat", 1),
    ]
    assert len(list(acme.list(category="dog"))) == 5
    assert [c.concept_id for c in acme.list(tenant="beta")] == []
    assert list(acme.list(base_fingerprint="0" * 32)) == []
    with pytest.raises(InvalidArgument):
        list(acme.list(page_size=100_000))


WIDE = BaseSpec(fingerprint="wide", layers=(CrossAttentionLayer("wide.attn2", 1024, 1024, 8, 1024),), token_dim=1024)


def test_fetch_resumes_at_its_offset_after_the_registry_restarts(server_factory, make_artifact):
    """8 MB, far more than HTTP/2 flow control lets the server push ahead: the download must resume."""
    server = server_factory()
    server.specs.append(WIDE)
    server.restart()
    data = make_artifact("big", base=WIDE)
    with server.client("tok-acme") as publisher:
        publisher.publish(data)
    received: list[int] = []

    def progress(done: int, total: int) -> None:
        received.append(done)
        if len(received) == 3:
            server.restart()  # breaks the stream mid-download

    with server.client("tok-acme", chunk_bytes=65536) as client:
        assert client.fetch("big", progress=progress) == data
    assert received == sorted(received) and received[-1] == len(data)
    sent_after_restart = server.handle.metrics.registry.get_sample_value(
        "cdserve_registry_transfer_bytes_total", {"direction": "download"}
    )
    assert 0 < sent_after_restart <= len(data) - 3 * 65536
