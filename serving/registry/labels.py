"""Labels: small key → value annotations a publisher attaches to a concept version.

They are returned in every ConceptInfo (Get, List, Watch, Fetch), so their count and sizes are
bounded: a few concepts with megabytes of labels would otherwise make every List page too large
to send.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared.errors import InvalidArgument

LABEL_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
"""Like a Kubernetes label key: at most 63 characters, no blanks."""
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
MAX_LABEL_KEY_CHARS = 63
UTF8_MAX_BYTES_PER_CHAR = 4
ENTRY_OVERHEAD_BYTES = 18
"""A map entry's framing in protobuf: three tags and three length prefixes."""


def check_labels(labels: Mapping[str, str], *, max_labels: int, max_value_chars: int) -> None:
    if len(labels) > max_labels:
        raise InvalidArgument(f"{len(labels)} labels; the limit is {max_labels} (max_labels)", field="labels")
    for key, value in labels.items():
        if not LABEL_KEY_PATTERN.fullmatch(key):
            raise InvalidArgument(
                f"label key {key!r} must match {LABEL_KEY_PATTERN.pattern} (letters, digits, '._/-')", field="labels"
            )
        if len(value) > max_value_chars:
            raise InvalidArgument(
                f"label {key!r} has a {len(value)}-character value; the limit is {max_value_chars} "
                "(max_label_value_chars)",
                field="labels",
            )
        if CONTROL_CHARACTERS.search(value):
            raise InvalidArgument(f"label {key!r}: the value holds control characters", field="labels")


def labels_bytes_bound(max_labels: int, max_value_chars: int) -> int:
    """The most bytes the labels of one concept can take in a message."""
    return max_labels * (MAX_LABEL_KEY_CHARS + max_value_chars * UTF8_MAX_BYTES_PER_CHAR + ENTRY_OVERHEAD_BYTES)
