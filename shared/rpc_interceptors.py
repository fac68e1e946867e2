"""gRPC server interceptors shared by cdserve's services: authentication, and error conversion
with metrics and logs.

Each wraps the RPC's behaviour in an async context manager and returns a handler of the same
streaming shape, as grpc requires.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import grpc

from shared.auth import Authenticator, reset_caller, set_caller
from shared.errors import CdserveError
from shared.grpc_status import status_for, trailing_metadata
from shared.rpc_reflection import REFLECTION_SERVICES

log = logging.getLogger("cdserve.rpc")

Around = Callable[[grpc.aio.ServicerContext], AbstractAsyncContextManager[None]]

_HANDLER_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _wrap_behaviour(inner: Callable[..., Any], around: Around) -> Callable[..., Any]:
    """`inner` run inside `around(context)`; async generators stay async generators."""
    if inspect.isasyncgenfunction(inner):

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with around(context):
                async for response in inner(request, context):
                    yield response

        return streaming

    async def single(request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with around(context):
            return await inner(request, context)

    return single


def wrap_handler(handler: grpc.RpcMethodHandler | None, around: Around) -> grpc.RpcMethodHandler | None:
    if handler is None:
        return None
    for attribute, factory in _HANDLER_FACTORIES.items():
        inner = getattr(handler, attribute)
        if inner is not None:
            return factory(
                _wrap_behaviour(inner, around),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


def short_method(full_method: str) -> str:
    """ "/cdserve.v1.Registry/Publish" → "Registry/Publish": a bounded metric label."""
    return full_method.rsplit(".", 1)[-1]


class CallObserver(Protocol):
    def observe_call(self, method: str, code: str, seconds: float) -> None: ...


Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


PROBE_SERVICES = ("grpc.health.v1.Health", *REFLECTION_SERVICES)
"""Served to anyone, whatever their token: they tell only whether a service is up and its schema
(the .proto files ship with cdserve), and probes (Kubernetes, load balancers, grpcurl) send none or
the wrong one."""


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Resolves the caller from the bearer token for the handler (`auth.current_caller()`).

    Whether a call needs a token is the domain's rule (`Caller.require_tenant`); an unknown or
    malformed token is refused here for every call, reads included, except the probes'
    (`PROBE_SERVICES`), which never look at it.
    """

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method.lstrip("/").rsplit("/", 1)[0] in PROBE_SERVICES:
            return await continuation(handler_call_details)
        authorization = next(
            (value for key, value in handler_call_details.invocation_metadata or () if key == "authorization"), None
        )

        @asynccontextmanager
        async def authenticated(_: grpc.aio.ServicerContext) -> AsyncIterator[None]:
            token = set_caller(self._authenticator.caller(authorization))
            try:
                yield
            finally:
                reset_caller(token)

        return wrap_handler(await continuation(handler_call_details), authenticated)


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Turns typed errors into status + trailing detail (via `shared.grpc_status`), counts every
    call by method and code, times it, and logs failures. Must be the outermost interceptor."""

    def __init__(self, metrics: CallObserver) -> None:
        self._metrics = metrics

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = short_method(handler_call_details.method)

        @asynccontextmanager
        async def observed(context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                yield
            except CdserveError as e:
                code = status_for(e)
                log.info(
                    "rpc failed",
                    extra={
                        "fields": {
                            "method": method,
                            "code": code.name,
                            "reason": e.reason,
                            "field": e.field,
                            "detail": e.message,
                        }
                    },
                )
                await context.abort(code, e.message, trailing_metadata(e))
            except (asyncio.CancelledError, GeneratorExit):
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception as e:
                code = grpc.StatusCode.INTERNAL
                log.exception("rpc crashed", extra={"fields": {"method": method}})
                await context.abort(
                    code, f"internal error ({type(e).__name__}); see the server log", trailing_metadata(e)
                )
            finally:
                self._metrics.observe_call(method, code.name, time.perf_counter() - start)

        return wrap_handler(await continuation(handler_call_details), observed)
