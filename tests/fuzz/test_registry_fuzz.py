"""Arbitrary values in every field of every Registry request, on a real server over real SQLite and
blob files: never INTERNAL or UNKNOWN, the server still answers its health check, and a refused
call leaves the store exactly as it was (rows, blobs, staged files, event sequence)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proto import registry_pb2, registry_pb2_grpc
from serving.registry.config import RegistryConfig
from shared.artifact import to_bytes
from shared.basemodel import BaseModel
from tests.fuzz.conftest import CALL_TIMEOUT_S, TOKENS, WATCH_S, fuzz_settings, metadata, outcome, serving
from tests.fuzz.messages import messages, one_field_changed
from tests.registry.conftest import TOKENS as REGISTRY_TOKENS
from tests.registry.conftest import ServerThread, store_snapshot
from tests.support.synthetic import random_concept

# The strategies hold a whole artifact (a hint for `data`); Hypothesis warns when it describes them.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning")


@pytest.fixture(scope="module")
def artifact(tiny_base: BaseModel) -> bytes:
    return to_bytes(*random_concept(tiny_base.spec, "fuzz-dog", seed=3))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_base: BaseModel, artifact: bytes) -> Iterator[ServerThread]:
    config = RegistryConfig(data_dir=tmp_path_factory.mktemp("fuzz-registry"), shutdown_grace_s=0.0, metrics_port=None)
    server = ServerThread(config, [tiny_base.spec], dict(REGISTRY_TOKENS))
    with server.client("tok-acme") as acme:  # something for refs to find: public v1, private v2
        acme.publish(artifact, public=True)
        acme.publish(to_bytes(*random_concept(tiny_base.spec, "fuzz-dog", seed=4)))
    yield server
    server.close()


@pytest.fixture(scope="module")
def stub(server: ServerThread) -> Iterator[registry_pb2_grpc.RegistryStub]:
    with grpc.insecure_channel(server.target, options=[("grpc.enable_retries", 0)]) as channel:
        yield registry_pb2_grpc.RegistryStub(channel)


def hints(artifact: bytes) -> dict[str, st.SearchStrategy]:
    """Values that get past the first check: known refs, the artifact, its size and digest."""
    refs = ["fuzz-dog", "fuzz-dog@1", "fuzz-dog@2", "fuzz-dog@3", "fuzz-dog@99999999999999999999", "fuzz-dog@٣"]
    return {
        "ref": st.sampled_from(refs),
        "concept_id": st.sampled_from(["fuzz-dog", "fuzz-cat", "fuzz-dog\n"]),
        "data": st.just(artifact),
        "total_bytes": st.just(len(artifact)),
        "sha256": st.just(hashlib.sha256(artifact).hexdigest()),
        "id_prefix": st.sampled_from(["fuzz", ""]),
    }


def requests_of(name: str, artifact: bytes) -> st.SearchStrategy:
    method = registry_pb2.DESCRIPTOR.services_by_name["Registry"].methods_by_name[name]
    one = messages(getattr(registry_pb2, method.input_type.name), hints(artifact))
    if not method.client_streaming:
        return one
    valid = registry_pb2.PublishHeader(
        concept_id="fuzz-dog", total_bytes=len(artifact), sha256=hashlib.sha256(artifact).hexdigest()
    )
    header_off = one_field_changed(valid, hints(artifact)).map(
        lambda header: [registry_pb2.PublishRequest(header=header), registry_pb2.PublishRequest(data=artifact)]
    )
    return st.one_of(st.lists(one, max_size=4), header_off)


def check_call(server: ServerThread, stub, name: str, request, token: str | None) -> None:
    before = store_snapshot(server)
    method = getattr(stub, name)
    streaming_in = isinstance(request, list)
    answer = outcome(
        lambda: method(
            iter(request) if streaming_in else request,
            metadata=metadata(token),
            timeout=WATCH_S if name == "Watch" else CALL_TIMEOUT_S,
        )
    )
    answer.check(f"Registry/{name}", may_time_out=name == "Watch")
    with grpc.insecure_channel(server.target) as channel:
        assert serving(channel)
    if answer.code != grpc.StatusCode.OK or name not in ("Publish", "Delete"):
        assert store_snapshot(server) == before, f"{name} answered {answer.code.name} and changed the store"


@pytest.mark.parametrize("name", ["Publish", "Get", "Fetch", "List", "Delete", "Watch"])
def test_any_request_is_answered_cleanly_and_a_refused_one_changes_nothing(server, stub, artifact, name):
    @fuzz_settings(default_examples=30)
    @given(request=requests_of(name, artifact), token=TOKENS)
    def run(request, token):
        check_call(server, stub, name, request, token)

    run()


def test_the_fuzzed_registry_still_serves_its_concepts(server: ServerThread, tmp_path: Path) -> None:
    """After every example above, what a client relies on still works end to end."""
    with server.client("tok-ops") as operator:
        listed = operator.list(all_versions=True, include_deleted=True)
        for concept in listed:
            if not concept.deleted:
                assert (
                    hashlib.sha256(operator.fetch(f"{concept.concept_id}@{concept.version}")).hexdigest()
                    == concept.sha256
                )
