"""Concept references: "id" means the latest live version, "id@N" pins version N."""

from __future__ import annotations

from shared.artifact import CONCEPT_ID_PATTERN
from shared.errors import InvalidArgument


def check_concept_id(concept_id: str, *, field: str = "concept_id") -> str:
    if not CONCEPT_ID_PATTERN.match(concept_id):
        raise InvalidArgument(
            f"concept id {concept_id!r} must match {CONCEPT_ID_PATTERN.pattern} (lowercase letters, digits, '._-')",
            field=field,
        )
    return concept_id


def parse_ref(ref: str) -> tuple[str, int | None]:
    """ "dog" → ("dog", None); "dog@3" → ("dog", 3); anything else is InvalidArgument naming `ref`."""
    concept_id, at, version_text = ref.partition("@")
    check_concept_id(concept_id, field="ref")
    if not at:
        return concept_id, None
    if not version_text.isdigit() or int(version_text) < 1:
        raise InvalidArgument(f"ref {ref!r}: the version after '@' must be a positive integer, e.g. 'dog@3'", field="ref")
    return concept_id, int(version_text)
