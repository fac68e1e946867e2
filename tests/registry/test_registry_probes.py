"""Health and reflection answer whatever token a probe sends (none, unknown, malformed), and
reflection speaks both v1alpha and v1 — checked with raw requests, as grpcurl sends them."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from proto import registry_pb2, registry_pb2_grpc

PROBE_TOKENS = {
    "no token": (),
    "unknown token": (("authorization", "Bearer nope"),),
    "malformed authorization": (("authorization", "Basic eHl6"),),
}


@pytest.mark.parametrize("metadata", list(PROBE_TOKENS.values()), ids=list(PROBE_TOKENS))
def test_health_needs_no_token(server, metadata):
    with grpc.insecure_channel(server.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "cdserve.v1.Registry"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), metadata=metadata, timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def reflect(server, version: str, request, metadata) -> reflection_pb2.ServerReflectionResponse:
    """One raw request to /grpc.reflection.<version>.ServerReflection/ServerReflectionInfo (v1 and
    v1alpha messages are the same on the wire)."""
    with grpc.insecure_channel(server.target) as channel:
        call = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        return next(call(iter([request]), metadata=metadata, timeout=10))


@pytest.mark.parametrize("metadata", list(PROBE_TOKENS.values()), ids=list(PROBE_TOKENS))
@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_v1_and_v1alpha_need_no_token(server, version, metadata):
    listed = reflect(server, version, reflection_pb2.ServerReflectionRequest(list_services=""), metadata)
    names = {service.name for service in listed.list_services_response.service}
    assert {
        "cdserve.v1.Registry",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names

    for symbol, file_name in (
        ("cdserve.v1.Registry", "proto/registry.proto"),
        (f"grpc.reflection.{version}.ServerReflection", None),
    ):
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        found = reflect(server, version, request, metadata).file_descriptor_response.file_descriptor_proto
        files = [descriptor_pb2.FileDescriptorProto.FromString(serialized) for serialized in found]
        assert any(symbol.rsplit(".", 1)[-1] in [s.name for s in f.service] for f in files), symbol
        if file_name:
            assert file_name in [f.name for f in files]


def test_the_registry_itself_still_refuses_an_unknown_token(server):
    with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as raised:
        registry_pb2_grpc.RegistryStub(channel).Get(
            registry_pb2.GetConceptRequest(ref="dog"), metadata=(("authorization", "Bearer nope"),), timeout=10
        )
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
