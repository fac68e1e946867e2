"""The typed errors of cdserve.

Every failure a caller can act on is one of these; `shared.grpc_status` is the single place that
maps them to gRPC status codes. Messages name the field and the bad value (never tensor contents)
and say what to do.
"""

from __future__ import annotations


class CdserveError(Exception):
    """Base class. `reason` is a stable machine-readable code; `field` the input at fault."""

    reason = "INTERNAL"

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(CdserveError):
    """A request parameter is malformed or outside its limits."""

    reason = "INVALID_ARGUMENT"


class InvalidArtifact(CdserveError):
    """A concept file is corrupt, truncated, inconsistent or not a cdserve artifact."""

    reason = "INVALID_ARTIFACT"


class TooLarge(CdserveError):
    """An upload or artifact exceeds a configured size limit."""

    reason = "TOO_LARGE"


class NotFound(CdserveError):
    """A concept, version or job does not exist (or is not visible to the caller)."""

    reason = "NOT_FOUND"


class IncompatibleBase(CdserveError):
    """A concept was trained for a different base model (fingerprint mismatch)."""

    reason = "INCOMPATIBLE_BASE"


class Conflict(CdserveError):
    """The request contradicts the current state (e.g. two concepts share a modifier token)."""

    reason = "CONFLICT"


class CapacityExceeded(CdserveError):
    """A queue or cache is full; retry later or elsewhere."""

    reason = "CAPACITY_EXCEEDED"


class Unauthenticated(CdserveError):
    """No valid bearer token."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(CdserveError):
    """The caller's tenant may not do this."""

    reason = "PERMISSION_DENIED"


class Unavailable(CdserveError):
    """A dependency (registry, cluster) cannot be reached right now; transient."""

    reason = "UNAVAILABLE"


class DeadlineExceeded(CdserveError):
    """The caller's deadline passed before the work finished."""

    reason = "DEADLINE_EXCEEDED"


class Cancelled(CdserveError):
    """The work was cancelled on request."""

    reason = "CANCELLED"
