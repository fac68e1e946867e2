"""List pages: cut by row count and by bytes, continued with an opaque keyset token.

A page must fit one gRPC message whatever the rows hold, so every row is charged an upper bound
of its encoded size (computed here from the record, without building the message).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from serving.registry.refs import parse_ref
from serving.registry.storage import ConceptRecord
from shared.errors import CdserveError, InvalidArgument

FIELD_OVERHEAD_BYTES = 6
"""Tag (1 byte for field numbers below 16) plus a length varint (≤ 5 bytes) of one protobuf field."""
SCALAR_FIELDS_BYTES = 8 * 11
"""The integer and boolean fields of a ConceptInfo, each at most a tag and a 10-byte varint."""
PAGE_OVERHEAD_BYTES = 1024
"""The response envelope and its next_page_token (a few dozen bytes), with room to spare."""
MAX_PAGE_TOKEN_CHARS = 128


@dataclass(frozen=True)
class Page:
    concepts: list[ConceptRecord]
    next_page_token: str


def encoded_size_bound(record: ConceptRecord) -> int:
    """An upper bound of the bytes `record` takes as one ConceptInfo inside a repeated field."""
    strings = (
        record.concept_id,
        record.tenant,
        record.sha256,
        record.base_fingerprint,
        record.delta_kind,
        record.header_json,
        *record.modifier_tokens,
        *record.category_words,
    )
    size = sum(len(text.encode()) + FIELD_OVERHEAD_BYTES for text in strings)
    size += sum(len(k.encode()) + len(v.encode()) + 3 * FIELD_OVERHEAD_BYTES for k, v in record.labels.items())
    return size + SCALAR_FIELDS_BYTES + FIELD_OVERHEAD_BYTES


def cut_page(records: Sequence[ConceptRecord], limit: int, max_message_bytes: int) -> Page:
    """The first rows up to `limit` that fit one message (at least one row); the token continues
    after the last kept row when more matched."""
    budget = max_message_bytes - PAGE_OVERHEAD_BYTES
    kept: list[ConceptRecord] = []
    for record in records[:limit]:
        budget -= encoded_size_bound(record)
        if kept and budget < 0:
            break
        kept.append(record)
    more = len(kept) < len(records)
    return Page(kept, encode_page_token(kept[-1]) if more else "")


def encode_page_token(record: ConceptRecord) -> str:
    return base64.urlsafe_b64encode(f"{record.concept_id}@{record.version}".encode()).decode()


def decode_page_token(token: str) -> tuple[str, int]:
    """The (concept_id, version) cursor in a token `encode_page_token` made; anything else,
    however crafted, is InvalidArgument."""
    try:
        if len(token) > MAX_PAGE_TOKEN_CHARS:
            raise ValueError("too long")
        concept_id, version = parse_ref(base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode())
        if version is None:
            raise ValueError("no version")
        return concept_id, version
    except (ValueError, binascii.Error, CdserveError) as e:  # UnicodeError is a ValueError
        raise InvalidArgument(
            "page_token is not one this registry issued; pass next_page_token unchanged", field="page_token"
        ) from e
