"""gRPC server reflection under both names clients use: `grpc.reflection.v1alpha` (grpcurl before
1.8, older tools) and `grpc.reflection.v1` (current grpcurl, Postman, grpcui, gRPC's own CLIs).

grpcio-reflection ships only v1alpha. v1 has the same messages field for field, renamed into the
`grpc.reflection.v1` package, so the one servicer answers both: its descriptor is added to the
default pool (so that reflection can describe itself) and the same behaviour is registered under
the v1 method name.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1ALPHA_SERVICE = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
REFLECTION_SERVICES = (V1ALPHA_SERVICE, V1_SERVICE)


def _ensure_v1_descriptor() -> None:
    """Add `grpc/reflection/v1/reflection.proto` to the default pool, built from v1alpha's."""
    pool = descriptor_pool.Default()
    try:
        pool.FindServiceByName(V1_SERVICE)
        return
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    old, new = f".{reflection_pb2.DESCRIPTOR.package}.", f".{V1_PACKAGE}."
    file.name, file.package = V1_FILE, V1_PACKAGE
    for message in file.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(old, new)
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.AddSerializedFile(file.SerializeToString())


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve reflection v1alpha and v1 listing `service_names` and both reflection services."""
    _ensure_v1_descriptor()
    servicer = reflection.aio.ReflectionServicer([*service_names, *REFLECTION_SERVICES])
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    methods = {"ServerReflectionInfo": handler}
    handlers = [grpc.method_handlers_generic_handler(name, methods) for name in REFLECTION_SERVICES]
    server.add_generic_rpc_handlers(handlers)
