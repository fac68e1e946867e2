"""The publish-only token a training job gets instead of its submitter's: minted with the key the
training service shares with the registry, checked by a real registry over gRPC."""

from __future__ import annotations

import secrets

import pytest

from serving.registry.config import RegistryConfig
from shared.artifact import to_bytes
from shared.auth import mint_job_token
from shared.errors import NotFound, PermissionDenied, Unauthenticated
from tests.support.synthetic import random_concept

from ..registry.conftest import TOKENS, ServerThread

KEY = secrets.token_urlsafe(48).encode()


@pytest.fixture(scope="module")
def registry(tmp_path_factory, tiny_base):
    folder = tmp_path_factory.mktemp("job-token")
    (folder / "job.key").write_bytes(KEY + b"\n")
    config = RegistryConfig(
        data_dir=folder / "data", metrics_port=None, shutdown_grace_s=0, job_token_key_file=folder / "job.key"
    )
    server = ServerThread(config, [tiny_base.spec], dict(TOKENS))
    yield server
    server.close()


@pytest.fixture(scope="module")
def make_artifact(tiny_base):
    return lambda concept_id: to_bytes(*random_concept(tiny_base.spec, concept_id))


def job_token(*concept_ids: str, tenant: str = "acme", ttl_s: float = 600, key: bytes = KEY) -> str:
    return mint_job_token(key, tenant=tenant, concept_ids=concept_ids, ttl_s=ttl_s)


def test_a_job_token_publishes_its_concept_for_its_tenant(registry, make_artifact):
    with registry.client(job_token("job-dog")) as job:
        published = job.publish(make_artifact("job-dog"))
    assert (published.concept.concept_id, published.concept.tenant) == ("job-dog", "acme")
    with registry.client("tok-acme") as acme:
        assert acme.get("job-dog").tenant == "acme"


def test_a_job_token_may_not_publish_another_id(registry, make_artifact):
    with registry.client(job_token("job-cat")) as job:
        with pytest.raises(PermissionDenied) as by_header:
            job.publish(make_artifact("job-cat"), concept_id="not-the-job-cat")
        with pytest.raises(PermissionDenied) as by_file:
            job.publish(make_artifact("other-cat"))  # the id comes from the file's header
    assert by_header.value.field == by_file.value.field == "concept_id"
    with registry.client("tok-ops") as ops:
        for concept_id in ("not-the-job-cat", "other-cat"):
            with pytest.raises(NotFound):
                ops.get(concept_id)


def test_a_job_token_may_not_delete_even_its_own_concept(registry, make_artifact):
    with registry.client(job_token("job-owl")) as job:
        job.publish(make_artifact("job-owl"))
        with pytest.raises(PermissionDenied):
            job.delete("job-owl")
    with registry.client("tok-acme") as acme:
        assert acme.get("job-owl").concept_id == "job-owl"


def test_an_operator_job_token_does_not_see_every_tenant(registry, make_artifact):
    with registry.client("tok-beta") as beta:
        beta.publish(make_artifact("beta-private"))
    with registry.client(job_token("ops-job", tenant="*")) as job, pytest.raises(NotFound):
        job.get("beta-private")


def test_an_expired_or_forged_job_token_is_refused(registry, make_artifact):
    with registry.client(job_token("late-dog", ttl_s=-1)) as late, pytest.raises(Unauthenticated) as expired:
        late.publish(make_artifact("late-dog"))
    assert "expired" in expired.value.message
    forged = job_token("forged-dog", key=secrets.token_urlsafe(48).encode())
    tampered = job_token("late-dog").replace(".", ".x", 1)
    for token in (forged, tampered):
        with registry.client(token) as client, pytest.raises(Unauthenticated) as unknown:
            client.publish(make_artifact("forged-dog"))
        assert "not known" in unknown.value.message
    with registry.client("tok-ops") as ops:
        for concept_id in ("late-dog", "forged-dog"):
            with pytest.raises(NotFound):
                ops.get(concept_id)
