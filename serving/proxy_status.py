"""What Serve's gRPC proxy answers when a Generator call fails: our status table, with its detail.

Serve's proxy (`ray.serve._private.proxy`, Ray 2.60) turns a failed call into a status with
`get_grpc_response_status(exc, …)` and writes it with `set_grpc_code_and_details(context, status)`.
Two of its answers break the contract of `proto/common.proto`, and Serve offers no option to change
either (`gRPCOptions` has no interceptors, and the proxy's server is built without any):

* Trailing metadata a replica sets on its `RayServegRPCContext` reaches the client only together
  with a response message: when the method raises, only the code and the details travel back
  (`gRPCStatusError`), so `cdserve-error-bin` never arrived.
* A replica that dies while it holds a call (killed, out of memory, its node lost) surfaces as
  `RayActorError`, which the proxy answers INTERNAL with Ray's text ("The actor died
  unexpectedly…"); it is a transient condition that a retry fixes once Serve has replaced the
  replica, so it must be UNAVAILABLE.

The thinnest place to fix both is that pair of functions, in the proxy process. `grpc_servicer_functions`
is the one hook of ours that Serve runs there, once per proxy before it serves: `add_to_proxy` registers
the Generator service as the stock function would and wraps the pair. Errors that are not ours (Serve's
own timeouts, back-pressure, unknown routes) keep Serve's answer; ours get the code from
`shared.grpc_status` and the `ErrorDetail` trailer, so any gRPC client, in any language, reads the same
detail as through a plain gRPC server. `tests/serving/test_proxy_status.py` fails when a Ray upgrade
moves these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from ray.exceptions import RayActorError, RayTaskError
from ray.serve._private import proxy
from ray.serve._private.proxy_request_response import ResponseStatus, gRPCStreamingType
from ray.serve.exceptions import gRPCStatusError

from proto import generator_pb2_grpc
from shared.errors import CdserveError, Unavailable
from shared.grpc_status import detail_for, status_for, trailing_metadata

REPLICA_STOPPED = (
    "the replica handling this call stopped before it answered; retry with backoff: "
    "Serve starts another replica in its place"
)


@dataclass(frozen=True)
class DetailedStatus(ResponseStatus):
    """A failed call's status with the trailing metadata that carries its `ErrorDetail`."""

    trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()


def add_to_proxy(servicer: Any, server: Any) -> None:
    """A `grpc_servicer_functions` entry: the Generator service, answered by our status table."""
    install()
    server.service_handler_factory = errors_without_a_message(server.service_handler_factory)
    generator_pb2_grpc.add_GeneratorServicer_to_server(servicer, server)


def errors_without_a_message(factory: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    """Serve's unary handler answers a failure with its status *and* an empty message, so the
    client receives response headers and gRPC counts the call as answered: a retry policy (ours
    retries UNAVAILABLE) never repeats it. Aborting instead sends the status alone, with the same
    code, details and trailers."""

    def make(service_method: str, streaming_type: Any) -> Any:
        handler = factory(service_method, streaming_type)
        if streaming_type is not gRPCStreamingType.UNARY_UNARY:
            return handler

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            response = await handler(request, context)
            code = context.code()
            if code is not None and code != grpc.StatusCode.OK:
                await context.abort(code, context.details() or "", context.trailing_metadata() or ())
            return response

        return unary_unary

    return make


def install() -> None:
    """Wrap the proxy's status functions (once per process)."""
    if getattr(proxy.get_grpc_response_status, "cdserve", False):
        return
    stock_status, stock_write = proxy.get_grpc_response_status, proxy.set_grpc_code_and_details

    def response_status(exc: BaseException, request_timeout_s: float | None, request_id: str) -> ResponseStatus:
        error = cdserve_error(exc)
        if error is None:
            return stock_status(exc, request_timeout_s, request_id)
        return DetailedStatus(
            code=status_for(error),
            is_error=True,
            message=detail_for(error).message,
            trailing_metadata=(*trailing_metadata(error), ("request_id", request_id)),
        )

    def write(context: grpc.ServicerContext, status: ResponseStatus) -> None:
        if isinstance(status, DetailedStatus):
            context.set_trailing_metadata(status.trailing_metadata)
        stock_write(context, status)

    response_status.cdserve = True  # type: ignore[attr-defined]
    proxy.get_grpc_response_status = response_status
    proxy.set_grpc_code_and_details = write


def cdserve_error(exc: BaseException) -> CdserveError | None:
    """Our typed error behind a failed call, or None when the failure is Serve's own business."""
    if isinstance(exc, gRPCStatusError) and isinstance(exc.original_exception, CdserveError):
        return exc.original_exception
    if isinstance(exc, RayActorError) and not isinstance(exc, RayTaskError):
        return Unavailable(REPLICA_STOPPED)
    return None
