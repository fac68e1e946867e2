"""Values no client should send — huge numbers, look-alike digits, trailing newlines, crafted
tokens, megabyte strings — are INVALID_ARGUMENT with a short message, never INTERNAL, and leave
the store as it was. Checked on the wire, as a client in any language sees it."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest

from proto import registry_pb2, registry_pb2_grpc
from shared.artifact import to_bytes
from tests.registry.conftest import header, store_snapshot
from tests.support.synthetic import random_concept

Code = grpc.StatusCode
MAX_DETAILS_CHARS = 512
"""No status message may be longer: it travels in a header, and it echoes what the caller sent."""


@dataclass(frozen=True)
class Answer:
    code: Code
    details: str
    trailer_bytes: int


def call(server, invoke: Callable[[registry_pb2_grpc.RegistryStub, dict], object], token: str = "tok-acme") -> Answer:
    """`invoke(stub, call_options)` with a raw stub (streams drained): the status, its text and the
    size of its trailers."""
    with grpc.insecure_channel(server.target) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        options = {"metadata": (("authorization", f"Bearer {token}"),), "timeout": 30}
        try:
            result = invoke(stub, options)
            if hasattr(result, "__next__"):
                for _ in result:
                    pass
        except grpc.RpcError as e:
            trailers = sum(len(k) + len(v) for k, v in e.trailing_metadata() or ())
            return Answer(e.code(), e.details() or "", trailers)
    return Answer(Code.OK, "", 0)


@pytest.fixture
def earlier(server, make_artifact):
    """'earlier' version 1, published before the bad input, which must leave it intact."""
    with server.client("tok-acme") as client:
        client.publish(make_artifact("earlier"))


def b64(text: str | bytes) -> str:
    return base64.urlsafe_b64encode(text.encode() if isinstance(text, str) else text).decode()


BAD_REFS = {
    "version above uint64 (earlier@99999999999999999999)": "earlier@99999999999999999999",
    "version 2^63 (earlier@9223372036854775808)": "earlier@9223372036854775808",
    "superscript digit version (earlier@²)": "earlier@²",
    "Arabic-Indic digit version (earlier@٣)": "earlier@٣",
    "leading zero version (earlier@01)": "earlier@01",
    "negative version (earlier@-1)": "earlier@-1",
    "id ending in a newline": "earlier\n",
    "pinned id ending in a newline (…@1)": "earlier\n@1",
    "id with a NUL byte": "ear\x00lier",
    "empty id (@1)": "@1",
    "empty version (earlier@)": "earlier@",
    "100,000-character ref": "a" * 100_000,
    "100,000-character ref with spaces": "a " * 50_000,
}
READS = {
    "Get": lambda ref: lambda stub, kw: stub.Get(registry_pb2.GetConceptRequest(ref=ref), **kw),
    "Fetch": lambda ref: lambda stub, kw: stub.Fetch(registry_pb2.FetchRequest(ref=ref), **kw),
    "Delete": lambda ref: lambda stub, kw: stub.Delete(registry_pb2.DeleteConceptRequest(ref=ref), **kw),
}


@pytest.mark.bad_input(service="Registry/{method}", code="INVALID_ARGUMENT")
@pytest.mark.parametrize("method", list(READS))
@pytest.mark.parametrize("ref", list(BAD_REFS.values()), ids=list(BAD_REFS))
def test_a_bad_ref_is_invalid_argument_with_a_short_message(server, earlier, method, ref):
    before = store_snapshot(server)
    answer = call(server, READS[method](ref))
    assert answer.code == Code.INVALID_ARGUMENT, answer
    assert len(answer.details) <= MAX_DETAILS_CHARS and answer.trailer_bytes <= 2 * MAX_DETAILS_CHARS
    assert "ref" in answer.details
    assert store_snapshot(server) == before


@pytest.mark.bad_input("ref dog@٣ (Arabic-Indic three) beside dog@3", service="Registry/Get", code="INVALID_ARGUMENT")
def test_a_non_ascii_digit_never_pins_a_version(server, make_artifact):
    with server.client("tok-acme") as client:
        for seed in range(3):
            client.publish(make_artifact("dog", seed=seed))
    assert call(server, READS["Get"]("dog@3")).code == Code.OK
    assert call(server, READS["Get"]("dog@٣")).code == Code.INVALID_ARGUMENT


BAD_PAGE_TOKENS = {
    "garbage page_token": "garbage",
    "page_token of the old JSON layout with a huge version": b64('["earlier", 99999999999999999999]'),
    "page_token with version 2^63": b64("earlier@9223372036854775808"),
    "page_token without a version": b64("earlier"),
    "page_token with a malformed id": b64("Bad Id@1"),
    "page_token of invalid UTF-8": b64(b"\xff\xfe@1"),
    "page_token with non-base64 characters": "é" * 8,
    "100,000-character page_token": "A" * 100_000,
}


@pytest.mark.bad_input(service="Registry/List", code="INVALID_ARGUMENT")
@pytest.mark.parametrize("token", list(BAD_PAGE_TOKENS.values()), ids=list(BAD_PAGE_TOKENS))
def test_a_crafted_page_token_is_invalid_argument(server, earlier, token):
    answer = call(server, lambda stub, kw: stub.List(registry_pb2.ListConceptsRequest(page_token=token), **kw))
    assert answer.code == Code.INVALID_ARGUMENT, answer
    assert "page_token" in answer.details and len(answer.details) <= MAX_DETAILS_CHARS


def test_a_page_token_the_registry_issued_still_continues_the_listing(server, make_artifact):
    with server.client("tok-acme") as client:
        for concept_id in ("a", "b", "c"):
            client.publish(make_artifact(concept_id))
        assert [c.concept_id for c in client.list(page_size=1)] == ["a", "b", "c"]


@pytest.mark.bad_input("page_size 2^32-1 (above the limit)", service="Registry/List", code="INVALID_ARGUMENT")
def test_a_page_size_above_the_limit_is_invalid_argument(server):
    request = registry_pb2.ListConceptsRequest(page_size=2**32 - 1)
    answer = call(server, lambda stub, kw: stub.List(request, **kw))
    assert answer.code == Code.INVALID_ARGUMENT and "page_size" in answer.details


@pytest.mark.parametrize(
    ("field", "value"),
    [("id_prefix", "a" * 100_000), ("category", "d" * 100_000), ("tenant", "t" * 100_000)],
    ids=["100,000-character id_prefix filter", "100,000-character category filter", "100,000-character tenant filter"],
)
@pytest.mark.bad_input(service="Registry/List", code="INVALID_ARGUMENT")
def test_an_overlong_list_filter_is_invalid_argument(server, field, value):
    answer = call(server, lambda stub, kw: stub.List(registry_pb2.ListConceptsRequest(**{field: value}), **kw))
    assert answer.code == Code.INVALID_ARGUMENT and len(answer.details) <= MAX_DETAILS_CHARS


@pytest.mark.parametrize(
    "request_",
    [
        registry_pb2.WatchRequest(after_sequence=2**63),
        registry_pb2.WatchRequest(after_sequence=2**64 - 1),
        registry_pb2.WatchRequest(heartbeat_s=2**32 - 1),
    ],
    ids=["Watch after_sequence 2^63", "Watch after_sequence 2^64-1", "Watch heartbeat_s 2^32-1"],
)
@pytest.mark.bad_input(service="Registry/Watch", code="INVALID_ARGUMENT")
def test_an_out_of_range_watch_request_is_invalid_argument(server, request_):
    answer = call(server, lambda stub, kw: stub.Watch(request_, **kw))
    assert answer.code == Code.INVALID_ARGUMENT, answer


@pytest.mark.bad_input("offset 2^64-1", service="Registry/Fetch", code="INVALID_ARGUMENT")
def test_a_huge_fetch_offset_is_invalid_argument(server, earlier):
    request = registry_pb2.FetchRequest(ref="earlier", offset=2**64 - 1)
    assert call(server, lambda stub, kw: stub.Fetch(request, **kw)).code == Code.INVALID_ARGUMENT


def publish_call(messages: list[registry_pb2.PublishRequest]):
    return lambda stub, kw: stub.Publish(iter(messages), **kw)


def artifact_with(spec, concept_id: str = "dog", token: str = "<dog>") -> bytes:
    header_, delta = random_concept(spec, "dog")
    part = header_.concepts[0].model_copy(update={"modifier_token": token})
    delta.token_embeddings = {token: next(iter(delta.token_embeddings.values()))}
    return to_bytes(header_.model_copy(update={"concept_id": concept_id, "concepts": [part]}), delta)


@pytest.mark.parametrize(
    "make",
    [
        lambda spec, good: [registry_pb2.PublishRequest(header=header(good, concept_id="dog\n"), data=good)],
        lambda spec, good: [registry_pb2.PublishRequest(header=header(a := artifact_with(spec, "dog\n")), data=a)],
        lambda spec, good: [
            registry_pb2.PublishRequest(header=header(a := artifact_with(spec, token="<dog>\n")), data=a)
        ],
        lambda spec, good: [registry_pb2.PublishRequest(header=header(good, concept_id="d" * 100_000), data=good)],
        lambda spec, good: [registry_pb2.PublishRequest(header=header(good, sha256="0" * 64 + "\n"), data=good)],
    ],
    ids=[
        "Publish concept_id ending in a newline",
        "artifact whose concept id ends in a newline",
        "artifact whose modifier token ends in a newline",
        "Publish concept_id of 100,000 characters",
        "Publish sha256 ending in a newline",
    ],
)
@pytest.mark.bad_input(service="Registry/Publish", code="INVALID_ARGUMENT")
def test_a_value_with_a_trailing_newline_or_of_huge_length_is_refused(server, earlier, make_artifact, spec, make):
    before = store_snapshot(server)
    answer = call(server, publish_call(make(spec, make_artifact("dog"))))
    assert answer.code == Code.INVALID_ARGUMENT, answer
    assert len(answer.details) <= MAX_DETAILS_CHARS
    assert store_snapshot(server) == before
