"""A Generator client with nothing of cdserve's client code: a bare `grpc` channel with gRPC's
retries off, as a peer in another language would be. Every outcome becomes an `Answer` holding the
status, the details and the `ErrorDetail` parsed from the raw `cdserve-error-bin` trailer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from proto import common_pb2, generator_pb2, generator_pb2_grpc
from shared.grpc_status import ERROR_DETAIL_KEY

OK = grpc.StatusCode.OK


@dataclass
class Answer:
    code: grpc.StatusCode
    details: str = ""
    detail: common_pb2.ErrorDetail | None = None
    """Parsed from the raw `cdserve-error-bin` trailer, when one came."""
    messages: list[Any] = field(default_factory=list)


class RawGenerator:
    """Generator calls over a plain channel; every outcome becomes an `Answer`."""

    def __init__(self, target: str, app: str) -> None:
        self._channel = grpc.insecure_channel(target, options=[("grpc.enable_retries", 0)])
        self._stub = generator_pb2_grpc.GeneratorStub(self._channel)
        self._app = app

    def close(self) -> None:
        self._channel.close()

    def _metadata(self, authorization: str | None) -> list[tuple[str, str]]:
        metadata = [("application", self._app)]
        return metadata + ([("authorization", authorization)] if authorization is not None else [])

    def generate(self, request: generator_pb2.GenerateRequest, authorization: str | None = None) -> Answer:
        try:
            response = self._stub.Generate(request, metadata=self._metadata(authorization), timeout=120)
        except grpc.RpcError as e:
            return _failed(e, [])
        return Answer(OK, messages=[response])

    def stream(
        self,
        request: generator_pb2.GenerateRequest,
        authorization: str | None = None,
        on_message: Callable[[generator_pb2.GenerateProgress], None] | None = None,
    ) -> Answer:
        messages: list[Any] = []
        try:
            for message in self._stub.GenerateStream(request, metadata=self._metadata(authorization), timeout=120):
                messages.append(message)
                if on_message is not None:
                    on_message(message)
        except grpc.RpcError as e:
            return _failed(e, messages)
        return Answer(OK, messages=messages)


def _failed(error: grpc.RpcError, messages: list[Any]) -> Answer:
    detail = None
    for key, value in error.trailing_metadata() or ():
        if key == ERROR_DETAIL_KEY:
            assert isinstance(value, bytes)  # a -bin key: raw bytes on the wire
            detail = common_pb2.ErrorDetail.FromString(value)
    return Answer(error.code(), error.details() or "", detail, messages)
