"""Serve's "Request failed." records: refusals become one line, faults keep their traceback."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest
from ray.serve.exceptions import gRPCStatusError

from serving import refusal_log
from shared.errors import CapacityExceeded, NotFound


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def kept() -> Iterator[Kept]:
    logger = logging.getLogger(refusal_log.SERVE_LOGGER)
    handler = Kept()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    refusal_log.install()
    refusal_log.install()  # idempotent: a second replica start in one process adds nothing
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.filters = [f for f in logger.filters if not isinstance(f, refusal_log.RefusalsWithoutTraceback)]


def fail_with(error: Exception) -> None:
    try:
        raise error
    except Exception:
        logging.getLogger(refusal_log.SERVE_LOGGER).exception("Request failed.")


def test_a_refusal_is_one_info_line_with_status_and_reason(kept: Kept) -> None:
    fail_with(NotFound("no concept 'nope' is visible to this caller"))
    assert kept.lines == ["INFO Request refused: NOT_FOUND NOT_FOUND: no concept 'nope' is visible to this caller"]
    assert kept.records[0].exc_info is None
    filters = logging.getLogger(refusal_log.SERVE_LOGGER).filters
    assert sum(isinstance(f, refusal_log.RefusalsWithoutTraceback) for f in filters) == 1


def test_a_refusal_wrapped_by_serve_with_its_status_is_one_line_too(kept: Kept) -> None:
    refused = NotFound("no concept 'nope' is visible to this caller")
    fail_with(gRPCStatusError(refused, grpc.StatusCode.NOT_FOUND, refused.message))
    assert kept.lines == ["INFO Request refused: NOT_FOUND NOT_FOUND: no concept 'nope' is visible to this caller"]


def test_overload_is_a_warning_without_traceback(kept: Kept) -> None:
    fail_with(CapacityExceeded("the queue is full"))
    assert kept.lines == ["WARNING Request refused: RESOURCE_EXHAUSTED CAPACITY_EXCEEDED: the queue is full"]


def test_any_other_exception_keeps_its_traceback_at_error(kept: Kept) -> None:
    fail_with(ZeroDivisionError("division by zero"))
    assert kept.records[0].levelno == logging.ERROR
    assert kept.lines[0].startswith("ERROR Request failed.\nTraceback (most recent call last):")
    assert "ZeroDivisionError: division by zero" in kept.lines[0]
