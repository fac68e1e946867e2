"""Concept references: "id" means the latest live version, "id@N" pins version N."""

from __future__ import annotations

import re

from shared.artifact import CONCEPT_ID_PATTERN
from shared.errors import InvalidArgument, NotFound

MAX_VERSION = 2**63 - 1
"""Versions and event sequences are SQLite INTEGERs (signed 64-bit)."""
VERSION_PATTERN = re.compile(r"[1-9][0-9]{0,18}")


def check_concept_id(concept_id: str, *, field: str = "concept_id") -> str:
    if not CONCEPT_ID_PATTERN.fullmatch(concept_id):
        raise InvalidArgument(
            f"{field} {concept_id!r}: a concept id must match {CONCEPT_ID_PATTERN.pattern} "
            "(lowercase letters, digits, '._-')",
            field=field,
        )
    return concept_id


def parse_ref(ref: str) -> tuple[str, int | None]:
    """ "dog" → ("dog", None); "dog@3" → ("dog", 3); anything else is InvalidArgument naming `ref`.

    The version is ASCII digits only (`str.isdigit` also takes '²' and '٣') and at most
    `MAX_VERSION`, the largest the metadata store can hold.
    """
    concept_id, at, version_text = ref.partition("@")
    check_concept_id(concept_id, field="ref")
    if not at:
        return concept_id, None
    if not VERSION_PATTERN.fullmatch(version_text) or int(version_text) > MAX_VERSION:
        raise InvalidArgument(
            f"ref {ref!r}: the version after '@' must be an integer from 1 to {MAX_VERSION}, e.g. 'dog@3'", field="ref"
        )
    return concept_id, int(version_text)


def check_sequence(value: int, *, field: str) -> int:
    """A cursor into the event log: from 0 to the largest sequence the store can hold."""
    if not 0 <= value <= MAX_VERSION:
        raise InvalidArgument(f"{field} {value} is outside 0…{MAX_VERSION}", field=field)
    return value


def not_found(concept_id: str, version: int | None) -> NotFound:
    """The one answer for a concept that does not exist, was deleted or is not the caller's to see:
    every door words it the same, so that none reveals which of the three it is."""
    what = f"version {version} of concept {concept_id!r}" if version else f"concept {concept_id!r}"
    return NotFound(f"{what} does not exist, was deleted, or is not visible to you", field="ref")
