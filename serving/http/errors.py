"""HTTP statuses of cdserve errors: the gRPC status an error maps to (`shared.grpc_status`, the one
error → status table) translated by the canonical gRPC → HTTP table, and the same `ErrorDetail`
body `{reason, field, message}` that gRPC sends as trailing metadata.
"""

from __future__ import annotations

import logging

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from shared import errors
from shared.grpc_status import detail_for, status_for

log = logging.getLogger("cdserve.http")

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
"""The canonical mapping of google.rpc.Code to HTTP (as in google/rpc/code.proto)."""

PAYLOAD_TOO_LARGE = 413
"""gRPC folds a too-large upload and an overload into RESOURCE_EXHAUSTED; HTTP tells them apart,
so that a client retries an overload (429) but not an upload that can never fit."""


def http_status(error: BaseException) -> int:
    if isinstance(error, errors.TooLarge):
        return PAYLOAD_TOO_LARGE
    return HTTP_STATUS[status_for(error)]


def error_body(error: BaseException) -> dict[str, str]:
    detail = detail_for(error)
    return {"reason": detail.reason, "field": detail.field, "message": detail.message}


def error_response(error: BaseException) -> JSONResponse:
    status = http_status(error)
    if status >= 500:
        log.warning("request failed: %s", error, exc_info=not isinstance(error, errors.CdserveError))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(error), status_code=status, headers=headers)


def validation_error(error: RequestValidationError) -> errors.InvalidArgument:
    """FastAPI's parsing errors as the InvalidArgument the replica would raise: the field and why."""
    first = error.errors()[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    field = ".".join(location)
    return errors.InvalidArgument(f"{field or 'request'}: {first.get('msg', 'invalid value')}", field=field)


def install_error_handlers(api: FastAPI) -> None:
    """Every failure of every route leaves as an ErrorDetail body with the table's status."""

    async def on_cdserve_error(_: Request, error: Exception) -> JSONResponse:
        return error_response(error)

    async def on_validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(error))

    async def on_http_error(_: Request, error: HTTPException) -> JSONResponse:
        """Starlette's own refusals (no such path, method not allowed) in the same body."""
        reason = errors.NotFound.reason if error.status_code == 404 else errors.InvalidArgument.reason
        body = {"reason": reason, "field": "", "message": str(error.detail)}
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    api.add_exception_handler(errors.CdserveError, on_cdserve_error)
    api.add_exception_handler(RequestValidationError, on_validation_error)  # type: ignore[arg-type]
    api.add_exception_handler(HTTPException, on_http_error)  # type: ignore[arg-type]
    api.add_exception_handler(Exception, on_cdserve_error)
