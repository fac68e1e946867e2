"""The committed generated modules match the .proto files (run `python -m proto.build` if not)."""

from proto.build import stale_modules


def test_generated_modules_are_current():
    assert stale_modules() == [], "run `python -m proto.build` and commit the result"
