"""The one mapping between cdserve errors and gRPC status codes (both directions)."""

from __future__ import annotations

import grpc

from proto import common_pb2
from shared import errors

ERROR_DETAIL_KEY = "cdserve-error-bin"

STATUS_BY_ERROR: dict[type[errors.CdserveError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidArtifact: grpc.StatusCode.INVALID_ARGUMENT,
    errors.TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.IncompatibleBase: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    errors.CapacityExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Cancelled: grpc.StatusCode.CANCELLED,
}

_ERROR_BY_REASON: dict[str, type[errors.CdserveError]] = {cls.reason: cls for cls in STATUS_BY_ERROR}

_ERROR_BY_STATUS: dict[grpc.StatusCode, type[errors.CdserveError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: errors.IncompatibleBase,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.CapacityExceeded,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.CANCELLED: errors.Cancelled,
}


def status_for(error: BaseException) -> grpc.StatusCode:
    """The status code for any exception; unknown exceptions are INTERNAL."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return grpc.StatusCode.INTERNAL


def detail_for(error: BaseException) -> common_pb2.ErrorDetail:
    if isinstance(error, errors.CdserveError):
        return common_pb2.ErrorDetail(reason=error.reason, field=error.field, message=error.message)
    return common_pb2.ErrorDetail(reason="INTERNAL", message=f"internal error: {type(error).__name__}")


def trailing_metadata(error: BaseException) -> tuple[tuple[str, bytes], ...]:
    return ((ERROR_DETAIL_KEY, detail_for(error).SerializeToString()),)


def error_from_rpc(rpc_error: grpc.RpcError) -> errors.CdserveError:
    """Rebuild the typed error a server raised, from the status and the trailing detail."""
    detail = common_pb2.ErrorDetail()
    trailers = getattr(rpc_error, "trailing_metadata", lambda: None)() or ()
    for key, value in trailers:
        if key == ERROR_DETAIL_KEY:
            detail.ParseFromString(value)
    code = rpc_error.code() if hasattr(rpc_error, "code") else grpc.StatusCode.UNKNOWN
    cls = _ERROR_BY_REASON.get(detail.reason) or _ERROR_BY_STATUS.get(code, errors.CdserveError)
    message = detail.message or (rpc_error.details() if hasattr(rpc_error, "details") else str(rpc_error))
    return cls(message or str(code), field=detail.field)
