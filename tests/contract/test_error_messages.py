"""Every typed error clips what it echoes, so that no status text or trailer can grow with the
caller's input (gRPC turns oversized metadata into RESOURCE_EXHAUSTED, hiding the real error)."""

import pytest

from shared import errors
from shared.grpc_status import trailing_metadata

CLASSES = errors.CdserveError.__subclasses__()


@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
@pytest.mark.parametrize(
    "echoed", ["x" * 100_000, "x " * 50_000, "é" * 100_000], ids=["one long word", "many short words", "multi-byte"]
)
def test_an_echoed_value_is_clipped_in_message_and_trailer(cls, echoed):
    error = cls(f"ref {echoed!r} must look like 'dog@3'", field="ref")
    assert len(error.message) <= errors.MAX_MESSAGE_CHARS
    assert error.message.startswith(f"ref {echoed[:3]!r}"[:8])
    assert errors.ELLIPSIS in error.message
    assert sum(len(key) + len(value) for key, value in trailing_metadata(error)) <= 4 * errors.MAX_MESSAGE_CHARS


def test_a_long_word_keeps_both_ends_and_the_advice():
    error = errors.InvalidArgument(f"concept id {'a' * 1000 + 'z'!r} must match [a-z0-9]+", field="ref")
    assert error.message.endswith("az' must match [a-z0-9]+")
    assert len(error.message) < 200


def test_a_short_message_is_unchanged():
    message = "concept 'dog' does not exist, was deleted, or is not visible to you"
    assert errors.NotFound(message).message == message
