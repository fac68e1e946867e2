"""Every bad input gets a precise status and leaves the store exactly as it was: no row, no blob,
no staged file, no event. The wire status is checked, as a client in any language sees it."""

from __future__ import annotations

import threading
from dataclasses import replace

import grpc
import pytest

from proto import registry_pb2, registry_pb2_grpc
from shared.artifact import to_bytes
from tests.registry.conftest import header, iter_then_block, other_base, store_snapshot, wait_until
from tests.support.synthetic import random_concept

Code = grpc.StatusCode


def raw_publish(server, messages: list[registry_pb2.PublishRequest], token: str = "tok-acme") -> Code:
    """Send exactly these Publish messages; return the status code."""
    with grpc.insecure_channel(server.target) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        try:
            stub.Publish(iter(messages), metadata=(("authorization", f"Bearer {token}"),), timeout=30)
        except grpc.RpcError as e:
            return e.code()
    return Code.OK


def nan_artifact(spec) -> bytes:
    header_, delta = random_concept(spec, "nan")
    next(iter(delta.layers.values()))["to_k"].dense[0, 0] = float("nan")
    return to_bytes(header_, delta)


def wrong_shape_artifact(spec) -> bytes:
    wider = replace(spec, layers=tuple(replace(layer, out_features=layer.out_features + 1) for layer in spec.layers))
    return to_bytes(*random_concept(wider, "wide"))


@pytest.fixture
def earlier(server, make_artifact):
    """One concept published before the bad input, which must stay intact."""
    data = make_artifact("earlier")
    with server.client("tok-acme") as client:
        client.publish(data)
    return data


CASES = {
    "bad digest": lambda d, spec: [registry_pb2.PublishRequest(header=header(d, sha256="0" * 64), data=d)],
    "truncated stream": lambda d, spec: [registry_pb2.PublishRequest(header=header(d), data=d[: len(d) // 2])],
    "more than declared": lambda d, spec: [registry_pb2.PublishRequest(header=header(d[:-1]), data=d)],
    "no header": lambda d, spec: [registry_pb2.PublishRequest(data=d)],
    "second header": lambda d, spec: [
        registry_pb2.PublishRequest(header=header(d)),
        registry_pb2.PublishRequest(header=header(d), data=d),
    ],
    "not an artifact": lambda d, spec: [registry_pb2.PublishRequest(header=header(b"x" * 100), data=b"x" * 100)],
    "NaN tensor": lambda d, spec: [registry_pb2.PublishRequest(header=header(a := nan_artifact(spec)), data=a)],
    "wrong shapes": lambda d, spec: [
        registry_pb2.PublishRequest(header=header(a := wrong_shape_artifact(spec)), data=a)
    ],
    "malformed concept id": lambda d, spec: [
        registry_pb2.PublishRequest(header=header(d, concept_id="Bad Id"), data=d)
    ],
    "wrong base fingerprint": lambda d, spec: [
        registry_pb2.PublishRequest(header=header(a := to_bytes(*random_concept(other_base(spec), "alien"))), data=a)
    ],
    "oversized": lambda d, spec: [registry_pb2.PublishRequest(header=header(d, total_bytes=2**40))],
}
EXPECTED = {
    "wrong base fingerprint": Code.FAILED_PRECONDITION,
    "oversized": Code.RESOURCE_EXHAUSTED,
}


@pytest.mark.bad_input(service="Registry/Publish", code=lambda p: EXPECTED.get(p["case"], Code.INVALID_ARGUMENT))
@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_upload_is_refused_and_leaves_no_trace(server, earlier, make_artifact, spec, case):
    messages = CASES[case](make_artifact("dog"), spec)
    before = store_snapshot(server)

    assert raw_publish(server, messages) == EXPECTED.get(case, Code.INVALID_ARGUMENT)

    assert store_snapshot(server) == before
    with server.client("tok-acme") as client:
        assert client.fetch("earlier") == earlier


@pytest.mark.bad_input("upload larger than max_upload_bytes", service="Registry/Publish", code="RESOURCE_EXHAUSTED")
def test_an_upload_over_the_configured_limit_is_refused(server_factory, make_artifact):
    server = server_factory(max_upload_bytes=10_000)
    before = store_snapshot(server)
    assert raw_publish(server, [registry_pb2.PublishRequest(header=header(d := make_artifact("dog")), data=d)]) == (
        Code.RESOURCE_EXHAUSTED
    )
    assert store_snapshot(server) == before


def test_a_client_that_gives_up_mid_upload_leaves_no_trace(server, earlier, make_artifact):
    data = make_artifact("dog")
    before = store_snapshot(server)
    with grpc.insecure_channel(server.target) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        release = threading.Event()
        messages = [registry_pb2.PublishRequest(header=header(data), data=data[:1000])]
        future = stub.Publish.future(
            iter_then_block(messages, release), metadata=(("authorization", "Bearer tok-acme"),)
        )
        wait_for_staged_upload(server)
        future.cancel()
        release.set()
    wait_until(lambda: store_snapshot(server) == before)


def wait_for_staged_upload(server) -> None:
    wait_until(lambda: any((server.config.data_dir / "staging").iterdir()))


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda stub: stub.Get(registry_pb2.GetConceptRequest(ref="unknown")), Code.NOT_FOUND),
        (lambda stub: list(stub.Fetch(registry_pb2.FetchRequest(ref="unknown@1"))), Code.NOT_FOUND),
        (lambda stub: stub.Delete(registry_pb2.DeleteConceptRequest(ref="unknown")), Code.NOT_FOUND),
        (lambda stub: stub.Get(registry_pb2.GetConceptRequest(ref="Bad Id")), Code.INVALID_ARGUMENT),
        (lambda stub: stub.Get(registry_pb2.GetConceptRequest(ref="earlier@0")), Code.INVALID_ARGUMENT),
        (lambda stub: stub.Get(registry_pb2.GetConceptRequest(ref="earlier@x")), Code.INVALID_ARGUMENT),
        (lambda stub: stub.Get(registry_pb2.GetConceptRequest(ref="earlier@1@2")), Code.INVALID_ARGUMENT),
        (lambda stub: stub.Get(registry_pb2.GetConceptRequest(ref="")), Code.INVALID_ARGUMENT),
        (lambda stub: stub.List(registry_pb2.ListConceptsRequest(page_token="garbage")), Code.INVALID_ARGUMENT),
        (lambda stub: list(stub.Fetch(registry_pb2.FetchRequest(ref="earlier", offset=10**9))), Code.INVALID_ARGUMENT),
    ],
    ids=[
        "Get ref 'unknown'",
        "Fetch ref 'unknown@1'",
        "Delete ref 'unknown'",
        "Get ref 'Bad Id'",
        "Get ref 'earlier@0'",
        "Get ref 'earlier@x'",
        "Get ref 'earlier@1@2'",
        "Get empty ref",
        "List page_token 'garbage'",
        "Fetch offset beyond the artifact's end",
    ],
)
@pytest.mark.bad_input(
    service=lambda p: "Registry/" + p["_id"].split()[0],
    case=lambda p: p["_id"].split(" ", 1)[1],
    code=lambda p: p["code"],
)
def test_bad_references_get_precise_statuses(server, earlier, call, code):
    before = store_snapshot(server)
    with grpc.insecure_channel(server.target) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            call(_authorised(stub))
    assert raised.value.code() == code
    assert store_snapshot(server) == before


class _authorised:
    """A stub whose calls carry acme's token."""

    def __init__(self, stub):
        self._stub = stub

    def __getattr__(self, name):
        method = getattr(self._stub, name)
        return lambda request: method(request, metadata=(("authorization", "Bearer tok-acme"),), timeout=30)
