"""Auth matrix: writes need a known bearer token; a tenant sees its own concepts plus public ones
and may change only its own; an operator token ('*') sees and deletes everything."""

from __future__ import annotations

import pytest

from shared.errors import NotFound, PermissionDenied, Unauthenticated


@pytest.fixture
def published(server, make_artifact):
    with server.client("tok-acme") as acme:
        acme.publish(make_artifact("private-dog", seed=1))
        acme.publish(make_artifact("public-dog", seed=2), public=True)
    return make_artifact("public-dog", seed=3)


@pytest.mark.parametrize(
    ("token", "error"),
    [(None, Unauthenticated), ("not-a-token", Unauthenticated), ("tok-beta", PermissionDenied), ("tok-acme", None)],
)
def test_write_access(server, published, token, error):
    with server.client(token) as client:
        for write in (
            lambda: client.delete("public-dog@1"),
            lambda: client.publish(published, concept_id="public-dog"),
        ):
            if error is None:
                write()
            else:
                with pytest.raises(error):
                    write()


@pytest.mark.parametrize(
    ("token", "visible"),
    [
        (None, ["public-dog"]),
        ("tok-beta", ["public-dog"]),
        ("tok-acme", ["private-dog", "public-dog"]),
        ("tok-ops", ["private-dog", "public-dog"]),
    ],
)
def test_read_visibility(server, published, token, visible):
    with server.client(token) as client:
        assert [c.concept_id for c in client.list()] == visible
        if "private-dog" not in visible:
            for read in (client.get, client.fetch):
                with pytest.raises(NotFound):
                    read("private-dog")


@pytest.mark.bad_input("unknown bearer token, even for a read", service="Registry/Get", code="UNAUTHENTICATED")
def test_an_unknown_token_is_refused_even_for_reads(server, published):
    with server.client("not-a-token") as client, pytest.raises(Unauthenticated):
        client.get("public-dog")


@pytest.mark.bad_input("delete of another tenant's private concept", service="Registry/Delete", code="NOT_FOUND")
def test_deleting_another_tenants_private_concept_does_not_reveal_it(server, published):
    with server.client("tok-beta") as beta, pytest.raises(NotFound):
        beta.delete("private-dog")


@pytest.mark.bad_input("publish under an id another tenant holds", service="Registry/Publish", code="PERMISSION_DENIED")
def test_another_tenant_cannot_take_over_an_id(server, published, make_artifact):
    with server.client("tok-beta") as beta, pytest.raises(PermissionDenied, match="not available to you"):
        beta.publish(make_artifact("private-dog", seed=9), concept_id="private-dog")


def test_the_operator_may_delete_any_tenants_concept(server, published):
    with server.client("tok-ops") as operator:
        assert [c.tenant for c in operator.delete("private-dog")] == ["acme"]
