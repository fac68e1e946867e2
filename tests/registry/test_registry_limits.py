"""What bounds the registry's memory and messages: uploads are validated from disk and never held
whole, concurrent uploads are capped, labels are bounded, List pages are cut by encoded size, and
metadata an artifact's content digest does not cover is refused."""

from __future__ import annotations

import hashlib
import json
import threading
import tracemalloc
from pathlib import Path

import grpc
import pytest

from proto import registry_pb2, registry_pb2_grpc
from serving.registry.config import RegistryConfig
from shared.artifact import to_bytes
from shared.spec import BaseSpec, CrossAttentionLayer
from tests.registry.conftest import TOKENS, ServerThread, header, iter_then_block, store_snapshot, wait_until
from tests.registry.test_registry_bad_values import MAX_DETAILS_CHARS, call, publish_call
from tests.support.synthetic import random_concept

Code = grpc.StatusCode
ACME = (("authorization", "Bearer tok-acme"),)
CHUNK_BYTES = 2**20


def with_extra_metadata(data: bytes, **extra: str) -> bytes:
    """The artifact with more keys in its safetensors metadata (tensor data untouched)."""
    length = int.from_bytes(data[:8], "little")
    raw = json.loads(data[8 : 8 + length])
    raw["__metadata__"].update(extra)
    text = json.dumps(raw, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + length :]


@pytest.mark.bad_input("100 KB of extra safetensors metadata", service="Registry/Publish", code="INVALID_ARGUMENT")
def test_extra_safetensors_metadata_is_refused(server, make_artifact):
    """100 KB beside the cdserve header would be stored and served but covered by no digest."""
    data = with_extra_metadata(make_artifact("dog"), notes="x" * 100_000)
    before = store_snapshot(server)
    answer = call(server, publish_call([registry_pb2.PublishRequest(header=header(data), data=data)]))
    assert answer.code == Code.INVALID_ARGUMENT
    assert "metadata keys ['notes']" in answer.details and "only 'cdserve'" in answer.details
    assert store_snapshot(server) == before


@pytest.mark.bad_input("artifact header beyond max_header_bytes", service="Registry/Publish", code="INVALID_ARGUMENT")
def test_a_header_beyond_the_limit_is_refused_naming_it(server_factory):
    server = server_factory(max_header_bytes=4096, max_message_bytes=4096 + 128 * 1024)
    header_, delta = random_concept(server.specs[0], "dog")
    data = to_bytes(header_.model_copy(update={"metrics": {"notes": "x" * 8000}}), delta)
    answer = call(server, publish_call([registry_pb2.PublishRequest(header=header(data), data=data)]))
    assert answer.code == Code.INVALID_ARGUMENT and "max_header_bytes" in answer.details


BAD_LABELS = {
    "33 labels": {f"k{i}": "v" for i in range(33)},
    "label value of 257 characters": {"team": "v" * 257},
    "label value of 2.5 MB": {"team": "v" * 2_500_000},
    "label key of 64 characters": {"k" * 64: "v"},
    "label key ending in a newline": {"team\n": "v"},
    "label key with a blank": {"my team": "v"},
    "empty label key": {"": "v"},
    "label value with a NUL byte": {"team": "a\x00b"},
}


@pytest.mark.bad_input(service="Registry/Publish", code="INVALID_ARGUMENT")
@pytest.mark.parametrize("labels", list(BAD_LABELS.values()), ids=list(BAD_LABELS))
def test_labels_beyond_the_limits_are_refused(server_factory, make_artifact, labels):
    server = server_factory(max_message_bytes=8 * 2**20)
    data = make_artifact("dog")
    before = store_snapshot(server)
    answer = call(server, publish_call([registry_pb2.PublishRequest(header=header(data, labels=labels), data=data)]))
    assert answer.code == Code.INVALID_ARGUMENT, answer
    assert "label" in answer.details and len(answer.details) <= MAX_DETAILS_CHARS
    assert store_snapshot(server) == before


def test_labels_at_the_limits_are_accepted(server, acme, make_artifact):
    labels = {f"team.{i:02d}/k-{'x' * 50}": "é" * 256 for i in range(32)}
    assert dict(acme.publish(make_artifact("dog"), labels=labels).concept.labels) == labels


def test_a_list_page_never_exceeds_the_message_limit(server_factory, make_artifact):
    """Rows with the largest labels allowed: the page is cut by bytes, never refused by gRPC."""
    max_message_bytes = 256 * 1024
    server = server_factory(max_message_bytes=max_message_bytes, max_header_bytes=128 * 1024)
    labels = {f"k{i:02d}": "v" * 256 for i in range(32)}
    with server.client("tok-acme") as client:
        for n in range(30):
            client.publish(make_artifact(f"dog-{n:02d}", seed=n), labels=labels)
    pages, request = [], registry_pb2.ListConceptsRequest(page_size=1000)
    with grpc.insecure_channel(server.target, options=[("grpc.max_receive_message_length", 64 * 2**20)]) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        while True:
            pages.append(stub.List(request, metadata=ACME, timeout=30))
            if not pages[-1].next_page_token:
                break
            request.page_token = pages[-1].next_page_token
    assert len(pages) > 1
    assert max(page.ByteSize() for page in pages) <= max_message_bytes
    assert [c.concept_id for page in pages for c in page.concepts] == [f"dog-{n:02d}" for n in range(30)]


def streamed(path: Path, total: int, sha256: str, **fields) -> object:
    """Publish messages read from `path` a chunk at a time: the sender holds one chunk."""
    yield registry_pb2.PublishRequest(header=registry_pb2.PublishHeader(total_bytes=total, sha256=sha256, **fields))
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            yield registry_pb2.PublishRequest(data=chunk)


@pytest.fixture(scope="module")
def wide_spec() -> BaseSpec:
    """Four cross-attention layers of 1024×1024: a dense concept of 32 MiB."""
    layers = tuple(CrossAttentionLayer(f"wide.{i}.attn2", 1024, 1024, 8, 1024) for i in range(4))
    return BaseSpec(fingerprint="w" * 32, layers=layers, token_dim=1024)


def test_a_large_upload_is_never_held_in_memory(tmp_path, wide_spec):
    path = tmp_path / "wide.safetensors"
    path.write_bytes(to_bytes(*random_concept(wide_spec, "wide")))
    size, sha256 = path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()
    assert size > 32 * 2**20
    config = RegistryConfig(data_dir=tmp_path / "data", metrics_port=None, shutdown_grace_s=0)
    server = ServerThread(config, [wide_spec], dict(TOKENS))
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = registry_pb2_grpc.RegistryStub(channel)
            tracemalloc.start()
            try:
                response = stub.Publish(streamed(path, size, sha256), metadata=ACME, timeout=120)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert response.concept.size_bytes == size and response.concept.num_layers == 4
        assert peak < size / 4, f"the upload and its validation peaked at {peak} bytes for a {size}-byte artifact"
    finally:
        server.close()


@pytest.mark.bad_input("upload beyond max_concurrent_uploads", service="Registry/Publish", code="RESOURCE_EXHAUSTED")
def test_uploads_beyond_the_concurrency_limit_are_refused_then_accepted_again(server_factory, make_artifact):
    server = server_factory(max_concurrent_uploads=1)
    first, second = make_artifact("first"), make_artifact("second")
    release = threading.Event()
    with grpc.insecure_channel(server.target) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        held = [registry_pb2.PublishRequest(header=header(first), data=first[:100])]
        rest = [registry_pb2.PublishRequest(data=first[100:])]
        pending = stub.Publish.future(iter_then_block(held, release, then=rest), metadata=ACME, timeout=60)
        wait_until(lambda: any((server.config.data_dir / "staging").iterdir()))

        refused = call(server, publish_call([registry_pb2.PublishRequest(header=header(second), data=second)]))
        assert refused.code == Code.RESOURCE_EXHAUSTED
        assert "max_concurrent_uploads" in refused.details

        release.set()
        assert pending.result(timeout=60).concept.concept_id == "first"
    with server.client("tok-acme") as client:
        assert client.publish(second).concept.concept_id == "second"
