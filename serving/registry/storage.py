"""The storage seam: what the registry needs from a metadata database and a blob store.

The embedded defaults are `sqlite_store.SqliteMetadataStore` and `blob_files.FileBlobStore`; a
cluster deployment backs the same two protocols with an external database and an object store.
Both are synchronous: the domain calls them from worker threads (`asyncio.to_thread`).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

PUBLISHED = "published"
DELETED = "deleted"


@dataclass(frozen=True, kw_only=True)
class NewConcept:
    """A validated artifact about to be committed; the store assigns the version."""

    concept_id: str
    tenant: str
    public: bool
    sha256: str
    size_bytes: int
    base_fingerprint: str
    modifier_tokens: tuple[str, ...]
    category_words: tuple[str, ...]
    delta_kind: str
    max_rank: int
    num_layers: int
    created_ms: int
    header_json: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ConceptRecord(NewConcept):
    """One committed concept version."""

    version: int
    deleted: bool = False


@dataclass(frozen=True)
class ConceptEventRecord:
    """A publish or delete, numbered by a store-wide sequence that only grows."""

    sequence: int
    kind: str
    concept: ConceptRecord
    time_ms: int


@dataclass(frozen=True)
class ListFilter:
    """What a List asks for; an empty field does not filter."""

    tenant: str = ""
    base_fingerprint: str = ""
    category: str = ""
    id_prefix: str = ""
    all_versions: bool = False
    include_deleted: bool = False


@dataclass(frozen=True)
class ConceptQuery:
    """Who reads (`viewer` None: anonymous, public only; `sees_all`: an operator), what a listing
    is filtered by, and where its page starts."""

    viewer: str | None
    sees_all: bool = False
    filters: ListFilter = field(default_factory=ListFilter)
    after: tuple[str, int] | None = None
    """Keyset cursor: the (concept_id, version) of the last row of the previous page."""
    limit: int = 100


class MetadataStore(Protocol):
    """Concept versions and the event log. Every write is one transaction."""

    def owner_of(self, concept_id: str) -> str | None:
        """The tenant that owns `concept_id` (any version, deleted or not), or None if unknown."""

    def insert_version(self, concept: NewConcept) -> tuple[ConceptRecord, int]:
        """Commit version N+1 of the id plus its PUBLISHED event; returns (record, sequence).

        Raises PermissionDenied when the id belongs to another tenant (checked in the transaction).
        """

    def find(self, concept_id: str, version: int | None, query: ConceptQuery) -> ConceptRecord | None:
        """That version, or the latest live one when `version` is None, if `query.viewer` may see it."""

    def list(self, query: ConceptQuery) -> list[ConceptRecord]:
        """Up to `query.limit` rows ordered by (concept_id, version descending), after the cursor."""

    def mark_deleted(self, concept_id: str, version: int | None) -> builtins.list[tuple[ConceptRecord, int]]:
        """Soft-delete one live version or all of them, appending a DELETED event for each."""

    def events_after(self, sequence: int, limit: int) -> builtins.list[ConceptEventRecord]:
        """Events with a sequence above `sequence`, oldest first."""

    def latest_sequence(self) -> int: ...

    def is_referenced(self, sha256: str) -> bool:
        """Whether any live version still points at this blob."""

    def live_digests(self) -> set[str]: ...

    def totals(self) -> tuple[int, int]:
        """(concept ids with a live version, bytes of distinct live blobs)."""

    def close(self) -> None: ...


class StagedBlob(Protocol):
    """An upload in progress; invisible until `commit`, gone after `discard`."""

    @property
    def size(self) -> int: ...

    @property
    def sha256(self) -> str:
        """Hex digest of what was written so far."""

    def write(self, data: bytes) -> None: ...

    def sealed(self) -> BinaryIO:
        """Make the staged bytes durable; a readable file of them for validation before commit,
        which the caller closes. No more writes."""

    def commit(self) -> bool:
        """Atomically store under its digest; True when that content was already stored."""

    def discard(self) -> None:
        """Remove the staged bytes; a no-op after commit."""


class BlobStore(Protocol):
    """Immutable blobs addressed by their sha256."""

    def stage(self) -> StagedBlob: ...

    def open(self, sha256: str) -> BinaryIO:
        """A readable binary file; raises NotFound if absent."""

    def delete(self, sha256: str) -> None: ...

    def digests(self) -> Iterable[str]: ...

    def clear_staging(self) -> int:
        """Remove uploads left behind by a crash; returns how many."""
