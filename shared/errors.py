"""The typed errors of cdserve.

Every failure a caller can act on is one of these; `shared.grpc_status` is the single place that
maps them to gRPC status codes. Messages name the field and the bad value (never tensor contents)
and say what to do.

A message echoes what a caller sent, and a caller may send megabytes: every message is clipped
here, once, so that no service can answer with an unbounded status text or trailer (gRPC refuses
metadata past a few KiB, which would turn a clear INVALID_ARGUMENT into RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import re

MAX_WORD_CHARS = 128
"""A run of non-blank characters longer than this (a pasted id, a token) keeps its two ends."""
MAX_MESSAGE_CHARS = 480
"""A message longer than this keeps its beginning (what is wrong) and its end (what to do)."""
ELLIPSIS = "…"
_LONG_WORD = re.compile(rf"\S{{{MAX_WORD_CHARS + 1},}}")


def clip(text: str) -> str:
    """`text` with every over-long word and the whole shortened around an ellipsis."""
    text = _LONG_WORD.sub(lambda m: f"{m[0][:96]}{ELLIPSIS}{m[0][-16:]}", text)
    if len(text) > MAX_MESSAGE_CHARS:
        text = f"{text[: MAX_MESSAGE_CHARS * 2 // 3]} {ELLIPSIS} {text[-(MAX_MESSAGE_CHARS // 3 - 3) :]}"
    return text


class CdserveError(Exception):
    """Base class. `reason` is a stable machine-readable code; `field` the input at fault."""

    reason = "INTERNAL"

    def __init__(self, message: str, *, field: str = "") -> None:
        message = clip(message)
        super().__init__(message)
        self.message = message
        self.field = clip(field)


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
