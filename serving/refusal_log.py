"""A refused request is logged as one line, not as a failure with a traceback.

Ray Serve logs every exception a replica method raises as "Request failed." with its stack at
ERROR. A refusal of the caller's request (an unknown concept, a bad parameter, a missing token) is
not a fault of the service: a stack at ERROR per bad request would bury real faults and wake
operators for clients' mistakes. The filter rewrites those records in place to one line naming
the status, the reason and the message; any other exception, and so every INTERNAL, keeps its
traceback at ERROR. A failure whose status the replica set on the call reaches the log wrapped
in Serve's `gRPCStatusError`; its `original_exception` is what was refused.
"""

from __future__ import annotations

import logging

from shared import errors
from shared.grpc_status import status_for

SERVE_LOGGER = "ray.serve"

# The service could not serve (overload, a dependency down): worth a warning, still no stack.
_SERVICE_SIDE = (errors.Unavailable, errors.CapacityExceeded)


class RefusalsWithoutTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        error = getattr(error, "original_exception", error)
        if isinstance(error, errors.CdserveError):
            level = logging.WARNING if isinstance(error, _SERVICE_SIDE) else logging.INFO
            record.levelno, record.levelname = level, logging.getLevelName(level)
            record.msg, record.args = (
                "Request refused: %s %s: %s",
                (
                    status_for(error).name,
                    error.reason,
                    error.message,
                ),
            )
            record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    """Add the filter to Serve's logger in this process, once."""
    logger = logging.getLogger(SERVE_LOGGER)
    if not any(isinstance(f, RefusalsWithoutTraceback) for f in logger.filters):
        logger.addFilter(RefusalsWithoutTraceback())
