"""Publishing must not tell a tenant what other tenants hold: a taken id gets one answer whatever
holds it, another tenant's bytes get the answer any bytes get, and with namespaced ids an id outside
the caller's namespace gets the same refusal whether it exists or not. See `Registry.publish`."""

from __future__ import annotations

import grpc
import pytest

from proto import registry_pb2
from tests.registry.conftest import header, store_snapshot
from tests.registry.test_registry_bad_values import call, publish_call

Code = grpc.StatusCode


def attempt(server, data: bytes, token: str, **fields) -> tuple[Code, str]:
    """Publish `data` raw; the status and its text with the id in it made generic."""
    answer = call(server, publish_call([registry_pb2.PublishRequest(header=header(data, **fields), data=data)]), token)
    concept_id = fields.get("concept_id", "")
    return answer.code, answer.details.replace(repr(concept_id), "'<id>'") if concept_id else answer.details


@pytest.fixture
def held(server, make_artifact) -> dict[str, bytes]:
    """acme's private, public and deleted ids, with the bytes of each."""
    artifacts = {name: make_artifact(name, seed=n) for n, name in enumerate(("secret-dog", "public-dog", "gone-dog"))}
    with server.client("tok-acme") as acme:
        acme.publish(artifacts["secret-dog"])
        acme.publish(artifacts["public-dog"], public=True)
        acme.publish(artifacts["gone-dog"])
        acme.delete("gone-dog")
    return artifacts


def test_a_taken_id_gets_one_answer_whether_private_public_or_deleted(server, held, make_artifact):
    before = store_snapshot(server)
    answers = {
        concept_id: attempt(server, make_artifact(concept_id, seed=99), "tok-beta", concept_id=concept_id)
        for concept_id in held
    }
    refusal = "concept id '<id>' is not available to you; publish under another id"
    assert set(answers.values()) == {(Code.PERMISSION_DENIED, refusal)}
    assert store_snapshot(server) == before


def test_another_tenants_bytes_get_the_answer_any_bytes_get(server, held, make_artifact):
    theirs = attempt(server, held["secret-dog"], "tok-beta", concept_id="secret-dog")
    other = attempt(server, make_artifact("secret-dog", seed=42), "tok-beta", concept_id="secret-dog")
    without_id = attempt(server, held["secret-dog"], "tok-beta")
    assert theirs == other == (Code.PERMISSION_DENIED, without_id[1].replace("'secret-dog'", "'<id>'"))
    assert "stored" not in theirs[1]


def test_the_same_bytes_are_deduplicated_for_their_own_tenant_only(server, held):
    with server.client("tok-acme") as acme:
        assert acme.publish(held["secret-dog"]).deduplicated
    with server.client("tok-beta") as beta:
        with pytest.raises(Exception, match="not available to you"):
            beta.publish(held["secret-dog"])


@pytest.fixture
def namespaced(server_factory, make_artifact):
    server = server_factory(namespaced_ids=True)
    with server.client("tok-acme") as acme:
        acme.publish(make_artifact("acme-secret"))
    return server


def test_with_namespaced_ids_an_id_outside_ones_namespace_reveals_nothing(namespaced, make_artifact):
    before = store_snapshot(namespaced)
    existing = attempt(namespaced, make_artifact("acme-secret", seed=5), "tok-beta", concept_id="acme-secret")
    unused = attempt(namespaced, make_artifact("acme-unused", seed=5), "tok-beta", concept_id="acme-unused")
    plain = attempt(namespaced, make_artifact("dog", seed=5), "tok-beta", concept_id="dog")
    assert existing == unused == plain
    assert existing[0] == Code.PERMISSION_DENIED and "start with '<your tenant>-'" in existing[1]
    assert store_snapshot(namespaced) == before


def test_with_namespaced_ids_each_tenant_publishes_in_its_own_namespace(namespaced, make_artifact):
    with namespaced.client("tok-beta") as beta, namespaced.client("tok-ops") as operator:
        assert beta.publish(make_artifact("beta-dog")).concept.tenant == "beta"
        assert operator.publish(make_artifact("shared-dog")).concept.tenant == "*"
