"""The one mapping from typed errors to gRPC status codes, as a table, and its inverse."""

import grpc
import pytest

from shared import errors
from shared.grpc_status import STATUS_BY_ERROR, error_from_rpc, status_for, trailing_metadata

EXPECTED = {
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


def test_every_error_class_has_its_status():
    assert STATUS_BY_ERROR == EXPECTED
    subclasses = set(errors.CdserveError.__subclasses__())
    assert subclasses == set(EXPECTED), "a new error class needs a row in the table"


@pytest.mark.parametrize(("cls", "code"), EXPECTED.items(), ids=[c.__name__ for c in EXPECTED])
def test_status_for(cls, code):
    assert status_for(cls("x")) == code


def test_unknown_exceptions_are_internal():
    assert status_for(ValueError("boom")) == grpc.StatusCode.INTERNAL


class _FakeRpcError(grpc.RpcError):
    """A client-side RpcError as grpc raises it (code, details, trailing metadata)."""

    def __init__(self, error: errors.CdserveError) -> None:
        self._error = error

    def code(self):
        return status_for(self._error)

    def details(self):
        return self._error.message

    def trailing_metadata(self):
        return trailing_metadata(self._error)


@pytest.mark.parametrize("cls", list(EXPECTED), ids=[c.__name__ for c in EXPECTED])
def test_typed_error_survives_the_round_trip(cls):
    rebuilt = error_from_rpc(_FakeRpcError(cls("what went wrong", field="steps")))
    assert type(rebuilt) is cls
    assert rebuilt.message == "what went wrong" and rebuilt.field == "steps"
