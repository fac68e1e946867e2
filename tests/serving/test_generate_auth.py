"""Generate and GenerateStream through Serve's gRPC proxy, seen by a plain gRPC client
(`tests.serving.rawgrpc`): the bearer token decides which concepts a call may use, failures carry
their `ErrorDetail` in the raw trailing metadata, and bad text is INVALID_ARGUMENT with a short
answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from proto import generator_pb2
from shared.artifact import to_bytes
from shared.auth import Caller
from shared.basemodel import BaseSpec
from shared.errors import NotFound
from tests.bad_inputs import shown
from tests.registry.conftest import ServerThread
from tests.serving.conftest import OPERATOR_TOKEN, LiveServe
from tests.serving.rawgrpc import OK, RawGenerator
from tests.support.synthetic import random_concept

APP = "authz"
ACME, BETA = "tok-acme", "tok-beta"
NOT_FOUND, UNAUTHENTICATED = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED
INVALID = grpc.StatusCode.INVALID_ARGUMENT
RPCS = {"generate": "Generator/Generate", "stream": "Generator/GenerateStream"}


def bearer(token: str) -> str:
    return f"Bearer {token}"


def request(prompt: str, *concepts: str, **options: Any) -> generator_pb2.GenerateRequest:
    return generator_pb2.GenerateRequest(prompt=prompt, concepts=list(concepts), steps=2, seed=1, **options)


@pytest.fixture(scope="module")
def raw(live_serve: LiveServe) -> Iterator[RawGenerator]:
    live_serve.deploy(APP)
    client = RawGenerator(live_serve.target, APP)
    yield client
    client.close()


@pytest.fixture(scope="module", autouse=True)
def acme_concepts(registry: ServerThread, spec: BaseSpec) -> None:
    """Tenant acme's concepts: gate-private and gate-public."""
    with registry.client(ACME) as acme:
        for concept_id, seed, public in (("gate-private", 80, False), ("gate-public", 81, True)):
            acme.publish(to_bytes(*random_concept(spec, concept_id, seed=seed)), public=public)


CALLERS = {
    "tenant": bearer(ACME),
    "operator": bearer(OPERATOR_TOKEN),
    "other tenant": bearer(BETA),
    "no token": None,
    "made-up token": bearer("tok-made-up"),
    "not a bearer token": "Basic dG9rLWFjbWU=",
}
PRIVATE_EXPECTED = {
    "tenant": OK,
    "operator": OK,
    "other tenant": NOT_FOUND,
    "no token": NOT_FOUND,
    "made-up token": UNAUTHENTICATED,
    "not a bearer token": UNAUTHENTICATED,
}


@pytest.mark.bad_input("made-up bearer token", service=lambda p: RPCS[p["method"]], code="UNAUTHENTICATED")
@pytest.mark.bad_input(
    "'Basic' credentials instead of a bearer token", service=lambda p: RPCS[p["method"]], code="UNAUTHENTICATED"
)
@pytest.mark.bad_input(
    "another tenant's private concept, or no token", service=lambda p: RPCS[p["method"]], code="NOT_FOUND"
)
@pytest.mark.parametrize("method", ["generate", "stream"])
@pytest.mark.parametrize("ref", ["gate-private", "gate-private@1"])
def test_a_private_concept_generates_for_its_tenant_and_the_operator_only(
    raw: RawGenerator, method: str, ref: str
) -> None:
    call = getattr(raw, method)
    answers = {who: call(request("photo of a <gate-private> dog", ref), auth) for who, auth in CALLERS.items()}
    assert {who: a.code for who, a in answers.items()} == PRIVATE_EXPECTED
    assert list(answers["tenant"].messages[-1 if method == "stream" else 0].ListFields())  # images came back
    for who in ("made-up token", "not a bearer token"):
        assert answers[who].detail is not None and answers[who].detail.field == "authorization"
        assert "tok-" not in answers[who].details  # a token is never echoed


@pytest.mark.bad_input(
    "another tenant's private concept (answered like an unknown one)",
    service=lambda p: RPCS[p["method"]],
    code="NOT_FOUND",
)
@pytest.mark.parametrize("method", ["generate", "stream"])
def test_another_tenants_concept_answers_exactly_like_an_unknown_one(raw: RawGenerator, method: str) -> None:
    call = getattr(raw, method)
    for hidden_ref, unknown_ref in (("gate-private", "gate-absent"), ("gate-private@1", "gate-absent@1")):
        for auth in (bearer(BETA), None):
            hidden = call(request("photo of a dog", hidden_ref), auth)
            unknown = call(request("photo of a dog", unknown_ref), auth)
            assert hidden.code == unknown.code == NOT_FOUND
            assert hidden.details.replace("gate-private", "X") == unknown.details.replace("gate-absent", "X")
            assert hidden.detail is not None and unknown.detail is not None
            hidden.detail.message = hidden.detail.message.replace("gate-private", "X")
            unknown.detail.message = unknown.detail.message.replace("gate-absent", "X")
            assert hidden.detail == unknown.detail


@pytest.mark.parametrize("method", ["generate", "stream"])
def test_public_concepts_are_usable_by_every_caller(raw: RawGenerator, method: str) -> None:
    call = getattr(raw, method)
    for auth in (bearer(ACME), bearer(BETA), bearer(OPERATOR_TOKEN), None):
        assert call(request("photo of a <gate-public> dog", "gate-public"), auth).code == OK


def test_a_merged_set_with_another_tenants_member_is_not_found(raw: RawGenerator) -> None:
    both = request("a <gate-public> dog and a <gate-private> cat", "gate-public", "gate-private")
    assert raw.generate(both, bearer(ACME)).code == OK
    refused = raw.generate(both, bearer(BETA))
    assert refused.code == NOT_FOUND and "gate-private" in refused.details


def test_without_anonymous_access_a_call_without_token_is_unauthenticated(live_serve: LiveServe) -> None:
    from ray import serve

    live_serve.deploy("authz-closed", auth={**live_serve.base_config.auth.model_dump(), "allow_anonymous": False})
    closed = RawGenerator(live_serve.target, "authz-closed")
    try:
        for method in (closed.generate, closed.stream):
            refused = method(request("photo of a dog"))
            assert refused.code == UNAUTHENTICATED and refused.detail is not None
            assert refused.detail.reason == "UNAUTHENTICATED" and refused.detail.field == "authorization"
            assert method(request("photo of a dog"), bearer(BETA)).code == OK
    finally:
        closed.close()
        serve.delete("authz-closed")


@pytest.mark.bad_input(service=lambda p: RPCS[p["method"]], case=lambda p: shown(p["options"]), code="INVALID_ARGUMENT")
@pytest.mark.parametrize("method", ["generate", "stream"])
@pytest.mark.parametrize(
    ("options", "field_name"),
    [
        ({"prompt": "a dog\x00 and more"}, "prompt"),
        ({"prompt": "a dog \x1b[31m red"}, "prompt"),
        ({"negative_prompt": "blurry\x07"}, "negative_prompt"),
        ({"request_id": "r" * 1_000_000}, "request_id"),
        ({"request_id": "has spaces"}, "request_id"),
        ({"scheduler": "s" * 100_000}, "scheduler"),
        ({"concepts": ["c" * 100_000]}, "concepts"),
    ],
)
def test_bad_text_is_invalid_argument_with_a_short_answer_and_its_detail(
    raw: RawGenerator, method: str, options: dict[str, Any], field_name: str
) -> None:
    message = request("photo of a dog")
    message.MergeFrom(generator_pb2.GenerateRequest(**options))
    answer = getattr(raw, method)(message, bearer(ACME))
    assert answer.code == INVALID and answer.messages == []
    assert answer.detail is not None and answer.detail.reason == "INVALID_ARGUMENT"
    assert answer.detail.field == field_name and field_name in answer.details
    assert len(answer.details) < 300 and answer.detail.message == answer.details


def test_ordinary_whitespace_and_a_bounded_request_id_are_accepted_and_echoed(raw: RawGenerator) -> None:
    request_id = "req-" + "0123456789abcdef" * 7 + "0123"  # 128 characters
    answer = raw.generate(request("photo of\ta dog\r\non grass", request_id=request_id), bearer(ACME))
    assert answer.code == OK and answer.messages[0].request_id == request_id


def test_another_ingress_generates_as_the_caller_it_authenticated_through_a_handle(raw: RawGenerator) -> None:
    from ray import serve

    handle = serve.get_app_handle(APP)
    private = request("photo of a <gate-private> dog", "gate-private")
    response = handle.generate_as.remote(private, Caller("acme")).result(timeout_s=120)
    assert list(response.concepts) == ["gate-private@1"]
    with pytest.raises(NotFound, match="gate-private"):
        handle.generate_as.remote(private, Caller("beta")).result(timeout_s=120)
    events = list(handle.options(stream=True).generate_stream_as.remote(private, Caller("acme")))
    assert events[-1].HasField("result") and all(e.HasField("progress") for e in events[:-1])
