"""Delete: soft (visible to listings with include_deleted and to watchers), per version or per id,
never reusing a version number, and blobs are collected once nothing live references them."""

from __future__ import annotations

import pytest

from shared.errors import NotFound


def blob_count(server) -> int:
    return len(list((server.config.data_dir / "sha256").glob("*/*")))


def test_deleting_the_latest_version_falls_back_to_the_previous_one(server, acme, make_artifact):
    first = make_artifact("dog", seed=1)
    acme.publish(first)
    acme.publish(make_artifact("dog", seed=2))

    [deleted] = acme.delete("dog@2")
    assert (deleted.version, deleted.deleted) == (2, True)
    assert acme.get("dog").version == 1 and acme.fetch("dog") == first
    with pytest.raises(NotFound):
        acme.fetch("dog@2")
    assert blob_count(server) == 1
    assert acme.publish(make_artifact("dog", seed=3)).concept.version == 3  # 2 is never reused


def test_deleting_an_id_deletes_every_version_softly(server, acme, make_artifact):
    acme.publish(make_artifact("dog", seed=1))
    acme.publish(make_artifact("dog", seed=2))

    assert [c.version for c in acme.delete("dog")] == [1, 2]
    for ref in ("dog", "dog@1"):
        with pytest.raises(NotFound):
            acme.get(ref)
    assert list(acme.list()) == []
    assert [(c.version, c.deleted) for c in acme.list(all_versions=True, include_deleted=True)] == [
        (2, True),
        (1, True),
    ]
    assert blob_count(server) == 0
    with pytest.raises(NotFound):
        acme.delete("dog")


def test_a_blob_shared_by_two_versions_survives_until_both_are_deleted(server, acme, make_artifact):
    data = make_artifact("dog")
    acme.publish(data)
    acme.publish(data)

    acme.delete("dog@1")
    assert acme.fetch("dog@2") == data and blob_count(server) == 1
    acme.delete("dog@2")
    assert blob_count(server) == 0
