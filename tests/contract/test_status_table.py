"""A typed error raised inside a handler reaches the client as its status code with the ErrorDetail
trailer, and the client rebuilds the same typed error from it.

The handlers run in a real grpc.aio server on 127.0.0.1 built by `shared.rpc_server.new_server`,
the same factory (and interceptors) as the registry's and the training service's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from proto import common_pb2
from shared import errors
from shared.grpc_status import ERROR_DETAIL_KEY, STATUS_BY_ERROR, error_from_rpc
from shared.rpc_server import new_server

SERVICE = "cdserve.test.Errors"


def all_error_classes() -> list[type[errors.CdserveError]]:
    found, pending = [], list(errors.CdserveError.__subclasses__())
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


ERRORS = {cls.__name__: cls for cls in all_error_classes()}

# What the API promises (docs/api.md), independent of how the table is written.
PROMISED = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.IncompatibleBase: grpc.StatusCode.FAILED_PRECONDITION,
    errors.CapacityExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def _raised(request: bytes) -> Exception:
    name = request.decode()
    if name in ERRORS:
        return ERRORS[name]("what went wrong", field="steps")
    return ValueError("a bug at /srv/secret/path")


async def _unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise _raised(request)


async def _stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"first"
    raise _raised(request)


class Calls:
    """The interceptors' call observer: what the metrics would count. The server records a call after
    the client already has its status, so a test waits for the record instead of reading it at once."""

    def __init__(self) -> None:
        self._codes: list[tuple[str, str]] = []
        self._changed = threading.Condition()

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        with self._changed:
            self._codes.append((method, code))
            self._changed.notify_all()

    def count(self, method: str, code: str) -> int:
        with self._changed:
            return self._codes.count((method, code))

    def counted(self, method: str, code: str, times: int, timeout_s: float = 10.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._codes.count((method, code)) >= times, timeout=timeout_s)


class Server:
    def __init__(self, port: int, calls: Calls, channel: grpc.Channel) -> None:
        self.calls = calls
        self.channel = channel
        self.unary = channel.unary_unary(f"/{SERVICE}/Raise")
        self.stream = channel.unary_stream(f"/{SERVICE}/RaiseStream")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    calls = Calls()

    async def start() -> tuple[grpc.aio.Server, int]:
        aio_server = new_server(calls, {}, max_message_bytes=1 << 20)
        handlers = {
            "Raise": grpc.unary_unary_rpc_method_handler(_unary),
            "RaiseStream": grpc.unary_stream_rpc_method_handler(_stream),
        }
        aio_server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        port = aio_server.add_insecure_port("127.0.0.1:0")
        await aio_server.start()
        return aio_server, port

    aio_server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Server(port, calls, channel)
    asyncio.run_coroutine_threadsafe(aio_server.stop(None), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def _detail(rpc_error: grpc.RpcError) -> common_pb2.ErrorDetail:
    details = [value for key, value in rpc_error.trailing_metadata() or () if key == ERROR_DETAIL_KEY]
    assert len(details) == 1, rpc_error.trailing_metadata()
    return common_pb2.ErrorDetail.FromString(details[0])


def test_every_error_class_has_a_status_of_its_own() -> None:
    assert set(STATUS_BY_ERROR) == set(ERRORS.values()), "a new error class needs a row in shared/grpc_status.py"
    assert not {grpc.StatusCode.OK, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL} & set(STATUS_BY_ERROR.values())


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_a_typed_error_reaches_the_client_with_its_status_and_detail(server: Server, name: str) -> None:
    cls = ERRORS[name]
    before = server.calls.count("Errors/Raise", STATUS_BY_ERROR[cls].name)
    with pytest.raises(grpc.RpcError) as caught:
        server.unary(name.encode(), timeout=10)
    rpc_error = caught.value
    assert rpc_error.code() == STATUS_BY_ERROR[cls]
    assert rpc_error.code() == PROMISED.get(cls, rpc_error.code())
    assert rpc_error.details() == "what went wrong"
    detail = _detail(rpc_error)
    assert (detail.reason, detail.field, detail.message) == (cls.reason, "steps", "what went wrong")
    rebuilt = error_from_rpc(rpc_error)
    assert type(rebuilt) is cls and rebuilt.message == "what went wrong" and rebuilt.field == "steps"
    assert server.calls.counted("Errors/Raise", rpc_error.code().name, times=before + 1)


def test_an_error_after_a_stream_started_still_arrives_typed(server: Server) -> None:
    received = []
    with pytest.raises(grpc.RpcError) as caught:
        for message in server.stream(b"NotFound", timeout=10):
            received.append(message)
    assert received == [b"first"]
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert isinstance(error_from_rpc(caught.value), errors.NotFound)


def test_a_crash_is_internal_and_tells_the_client_nothing_of_it(server: Server) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        server.unary(b"no such error: a bug", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in caught.value.details()
    detail = _detail(caught.value)
    assert detail.reason == "INTERNAL" and "secret" not in detail.message
    assert type(error_from_rpc(caught.value)) is errors.CdserveError
