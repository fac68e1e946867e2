"""The registry's rules, free of gRPC: publish, resolve, fetch, list, delete and watch concepts.

Every method takes the `Caller` (who is asking) and raises typed errors from `shared.errors`; the
servicer only converts. Blocking work (SQLite, file I/O, hashing, artifact validation) runs in
worker threads so the event loop keeps serving other calls and watch streams.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

from serving.registry.config import MESSAGE_OVERHEAD_BYTES, RegistryConfig
from serving.registry.events import EventHub
from serving.registry.metrics import RegistryMetrics
from serving.registry.refs import check_concept_id, parse_ref
from serving.registry.storage import (
    BlobStore,
    ConceptEventRecord,
    ConceptQuery,
    ConceptRecord,
    MetadataStore,
    NewConcept,
    StagedBlob,
)
from shared.artifact import ArtifactLimits, ConceptArtifact, from_bytes, read_header
from shared.auth import Caller
from shared.spec import BaseSpec
from shared.errors import IncompatibleBase, InvalidArgument, NotFound, PermissionDenied, TooLarge

log = logging.getLogger("cdserve.registry")

"""A token mapped to this tenant sees and may delete every concept (replicas, operators)."""

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
WATCH_BATCH = 256
RECORD_OVERHEAD_BYTES = 2048
"""Generous size of a ConceptInfo without its header_json (ids, tokens, labels), for paging."""


@dataclass(frozen=True)
class PublishIntent:
    """The header of an upload: what the client promises to send."""

    total_bytes: int
    sha256: str
    concept_id: str = ""
    """Empty: the concept id in the artifact's header."""
    public: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishResult:
    concept: ConceptRecord
    deduplicated: bool


@dataclass(frozen=True)
class Page:
    concepts: list[ConceptRecord]
    next_page_token: str


@dataclass(frozen=True)
class Heartbeat:
    """Sent on an idle watch: nothing new up to `sequence`."""

    sequence: int
    time_ms: int


@dataclass(frozen=True)
class ListFilter:
    tenant: str = ""
    base_fingerprint: str = ""
    category: str = ""
    id_prefix: str = ""
    all_versions: bool = False
    include_deleted: bool = False


def _now_ms() -> int:
    return int(time.time() * 1000)


def encode_page_token(record: ConceptRecord) -> str:
    return base64.urlsafe_b64encode(json.dumps([record.concept_id, record.version]).encode()).decode()


def decode_page_token(token: str) -> tuple[str, int]:
    try:
        concept_id, version = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(concept_id), int(version)
    except (ValueError, TypeError) as e:
        raise InvalidArgument(
            "page_token is not one this registry issued; pass next_page_token unchanged", field="page_token"
        ) from e


class Registry:
    """One registry over a metadata store and a blob store.

    Commits and deletes (with their blob garbage collection) hold one lock, so a blob found present
    by a publish cannot be collected before that publish's row references it.
    """

    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        *,
        config: RegistryConfig,
        base_specs: Sequence[BaseSpec],
        metrics: RegistryMetrics,
    ) -> None:
        self._metadata = metadata
        self._blobs = blobs
        self._config = config
        self._specs = {spec.fingerprint: spec for spec in base_specs}
        self._limits = ArtifactLimits(max_bytes=config.max_upload_bytes, max_header_bytes=config.max_header_bytes)
        self._metrics = metrics
        self._commit_lock = asyncio.Lock()
        self._recover()
        self._hub = EventHub(metadata.latest_sequence())

    def _recover(self) -> None:
        """Drop what a crash left behind: staged uploads and blobs no live version references."""
        staged = self._blobs.clear_staging()
        orphans = set(self._blobs.digests()) - self._metadata.live_digests()
        for sha256 in orphans:
            self._blobs.delete(sha256)
        if staged or orphans:
            log.info("recovered", extra={"fields": {"staged_removed": staged, "orphan_blobs_removed": len(orphans)}})
        self._metrics.set_totals(*self._metadata.totals())

    @property
    def latest_sequence(self) -> int:
        return self._hub.latest

    @property
    def accepted_fingerprints(self) -> list[str]:
        return sorted(self._specs)

    async def close(self) -> None:
        await self._hub.close()

    # -- publish -------------------------------------------------------------------------------

    async def publish(self, caller: Caller, intent: PublishIntent, chunks: AsyncIterator[bytes]) -> PublishResult:
        """Stage the stream, check size and digest, validate the artifact, then commit atomically.

        Anything that fails before the commit leaves no trace: the staged file is removed.
        """
        tenant = caller.require_tenant()
        self._check_intent(intent)
        if intent.concept_id:
            await self._check_owner(check_concept_id(intent.concept_id), tenant)
        staged = self._blobs.stage()
        commit: asyncio.Future[tuple[ConceptRecord, bool]] | None = None
        try:
            async for chunk in chunks:
                if staged.size + len(chunk) > intent.total_bytes:
                    raise InvalidArgument(
                        f"the upload sent more than the {intent.total_bytes} bytes its header declared",
                        field="data",
                    )
                await asyncio.to_thread(staged.write, chunk)
                self._metrics.transfer_bytes.labels(direction="upload").inc(len(chunk))
            if staged.size != intent.total_bytes:
                raise InvalidArgument(
                    f"the upload ended after {staged.size} of {intent.total_bytes} bytes; send the whole file",
                    field="data",
                )
            if staged.sha256 != intent.sha256:
                raise InvalidArgument(
                    f"the upload's sha256 is {staged.sha256}, the header declared {intent.sha256}; "
                    "the file changed or was corrupted in transit",
                    field="sha256",
                )
            artifact = await asyncio.to_thread(self._validate, await asyncio.to_thread(staged.read_all))
            concept_id = check_concept_id(intent.concept_id or artifact.concept_id)
            # From here the publish completes even if the caller goes away: a commit is never half done.
            new = self._new_concept(concept_id, tenant, intent, artifact, staged.size)
            commit = asyncio.ensure_future(self._commit(staged, new))
            record, deduplicated = await asyncio.shield(commit)
        finally:
            if commit is None:
                staged.discard()  # synchronous, so that a cancelled call cannot skip it
        log.info(
            "published",
            extra={"fields": {"concept_id": concept_id, "version": record.version, "tenant": tenant,
                              "size_bytes": record.size_bytes, "deduplicated": deduplicated}},
        )  # fmt: skip
        return PublishResult(record, deduplicated)

    async def _commit(self, staged: StagedBlob, new: NewConcept) -> tuple[ConceptRecord, bool]:
        """Store the blob, then the row and its event; a failed insert collects the blob again."""
        try:
            async with self._commit_lock:
                deduplicated = await asyncio.to_thread(staged.commit)
                try:
                    record, sequence = await asyncio.to_thread(self._metadata.insert_version, new)
                except BaseException:
                    await asyncio.to_thread(self._collect, [new.sha256])
                    raise
        finally:
            staged.discard()
        await self._committed(sequence)
        return record, deduplicated

    def _check_intent(self, intent: PublishIntent) -> None:
        if intent.total_bytes <= 0:
            raise InvalidArgument("header.total_bytes must be the artifact's size in bytes", field="total_bytes")
        if intent.total_bytes > self._config.max_upload_bytes:
            raise TooLarge(
                f"the upload is {intent.total_bytes} bytes; this registry accepts at most "
                f"{self._config.max_upload_bytes} (max_upload_bytes)",
                field="total_bytes",
            )
        if not SHA256_PATTERN.match(intent.sha256):
            raise InvalidArgument("header.sha256 must be 64 lowercase hex digits", field="sha256")

    async def _check_owner(self, concept_id: str, tenant: str) -> None:
        """Fail before the upload when the id is taken; `insert_version` re-checks in its transaction."""
        owner = await asyncio.to_thread(self._metadata.owner_of, concept_id)
        if owner is not None and owner != tenant:
            raise PermissionDenied(
                f"concept id {concept_id!r} belongs to another tenant; publish under another id", field="concept_id"
            )

    def _validate(self, data: bytes) -> ConceptArtifact:
        header = read_header(data, limits=self._limits, name="upload")
        spec = self._specs.get(header.base_fingerprint)
        if spec is None:
            raise IncompatibleBase(
                f"the concept was trained for base model {header.base_fingerprint!r}; this registry accepts "
                f"{self.accepted_fingerprints or 'no base model (start it with --base-spec)'}",
                field="base_fingerprint",
            )
        return from_bytes(data, base=spec, limits=self._limits, name="upload")

    def _new_concept(
        self, concept_id: str, tenant: str, intent: PublishIntent, artifact: ConceptArtifact, size: int
    ) -> NewConcept:
        header = artifact.header
        return NewConcept(
            concept_id=concept_id,
            tenant=tenant,
            public=intent.public,
            sha256=intent.sha256,
            size_bytes=size,
            base_fingerprint=header.base_fingerprint,
            modifier_tokens=tuple(header.modifier_tokens),
            category_words=tuple(part.category for part in header.concepts),
            delta_kind=header.delta_kind,
            max_rank=artifact.delta.max_rank,
            num_layers=len(artifact.delta.layers),
            created_ms=_now_ms(),
            header_json=header.model_dump_json(),
            labels=dict(intent.labels),
        )

    # -- read ----------------------------------------------------------------------------------

    async def get(self, caller: Caller, ref: str) -> ConceptRecord:
        concept_id, version = parse_ref(ref)
        query = ConceptQuery(viewer=caller.tenant, sees_all=caller.sees_all)
        record = await asyncio.to_thread(self._metadata.find, concept_id, version, query)
        if record is None:
            what = f"version {version} of concept {concept_id!r}" if version else f"concept {concept_id!r}"
            raise NotFound(f"{what} does not exist, was deleted, or is not visible to you", field="ref")
        return record

    async def fetch(
        self, caller: Caller, ref: str, offset: int, chunk_bytes: int
    ) -> tuple[ConceptRecord, AsyncIterator[tuple[int, bytes]]]:
        """The concept and its file from `offset` as (offset, data) chunks of at most `chunk_bytes`."""
        record = await self.get(caller, ref)
        if offset > record.size_bytes:
            raise InvalidArgument(f"offset {offset} is past the end of the {record.size_bytes}-byte file", field="offset")
        chunk_bytes = min(chunk_bytes or self._config.fetch_chunk_bytes, self._config.fetch_chunk_bytes)
        blob = await asyncio.to_thread(self._blobs.open, record.sha256)

        async def chunks() -> AsyncIterator[tuple[int, bytes]]:
            position = offset
            try:
                await asyncio.to_thread(blob.seek, offset)
                while data := await asyncio.to_thread(blob.read, chunk_bytes):
                    self._metrics.transfer_bytes.labels(direction="download").inc(len(data))
                    yield position, data
                    position += len(data)
            finally:
                blob.close()

        return record, chunks()

    async def list(self, caller: Caller, filters: ListFilter, page_size: int, page_token: str) -> Page:
        if page_size > self._config.max_list_page_size:
            raise InvalidArgument(
                f"page_size {page_size} is above the limit {self._config.max_list_page_size}", field="page_size"
            )
        limit = page_size or self._config.list_page_size
        query = ConceptQuery(
            viewer=caller.tenant,
            sees_all=caller.sees_all,
            tenant=filters.tenant,
            base_fingerprint=filters.base_fingerprint,
            category=filters.category,
            id_prefix=filters.id_prefix,
            all_versions=filters.all_versions,
            include_deleted=filters.include_deleted,
            after=decode_page_token(page_token) if page_token else None,
            limit=limit + 1,
        )
        records = await asyncio.to_thread(self._metadata.list, query)
        return self._page(records, limit)

    def _page(self, records: list[ConceptRecord], limit: int) -> Page:
        """Cut to `limit` rows and to what fits one message; the token continues after the last row."""
        budget = self._config.max_message_bytes - MESSAGE_OVERHEAD_BYTES
        kept: list[ConceptRecord] = []
        for record in records[:limit]:
            budget -= len(record.header_json) + RECORD_OVERHEAD_BYTES
            if kept and budget < 0:
                break
            kept.append(record)
        more = len(kept) < len(records)
        return Page(kept, encode_page_token(kept[-1]) if more else "")

    # -- delete --------------------------------------------------------------------------------

    async def delete(self, caller: Caller, ref: str) -> list[ConceptRecord]:
        """Soft-delete one version ("id@N") or all ("id"); blobs nothing live references are removed."""
        tenant = caller.require_tenant()
        concept_id, version = parse_ref(ref)
        target = await self.get(caller, ref)
        if target.tenant != tenant and not caller.sees_all:
            raise PermissionDenied(f"concept {concept_id!r} belongs to another tenant; you may not delete it", field="ref")
        deleted = await asyncio.shield(self._delete(concept_id, version))  # completes even if the caller leaves
        if not deleted:
            raise NotFound(f"{ref!r} was deleted meanwhile", field="ref")
        log.info("deleted", extra={"fields": {"ref": ref, "versions": [r.version for r in deleted], "tenant": tenant}})
        return deleted

    async def _delete(self, concept_id: str, version: int | None) -> list[ConceptRecord]:
        async with self._commit_lock:
            deleted = await asyncio.to_thread(self._metadata.mark_deleted, concept_id, version)
            await asyncio.to_thread(self._collect, {record.sha256 for record, _ in deleted})
        if deleted:
            await self._committed(max(sequence for _, sequence in deleted))
        return [record for record, _ in deleted]

    def _collect(self, digests: Iterable[str]) -> None:
        for sha256 in digests:
            if not self._metadata.is_referenced(sha256):
                self._blobs.delete(sha256)

    async def _committed(self, sequence: int) -> None:
        self._metrics.set_totals(*await asyncio.to_thread(self._metadata.totals))
        await self._hub.publish(sequence)

    # -- watch ---------------------------------------------------------------------------------

    async def watch(
        self, caller: Caller, after_sequence: int, heartbeat_s: float
    ) -> AsyncIterator[ConceptEventRecord | Heartbeat]:
        """Every event after the cursor that the caller may see, in order, then new ones as they
        commit; a `Heartbeat` after `heartbeat_s` of quiet. Ends when the registry closes."""
        heartbeat_s = heartbeat_s or self._config.watch_heartbeat_s
        cursor = after_sequence
        self._metrics.watchers.inc()
        try:
            while not self._hub.closed:
                events = await asyncio.to_thread(self._metadata.events_after, cursor, WATCH_BATCH)
                for event in events:
                    cursor = event.sequence
                    if caller.may_see(event.concept):
                        yield event
                if events:
                    continue
                if not await self._hub.wait_beyond(cursor, heartbeat_s):
                    yield Heartbeat(cursor, _now_ms())
        finally:
            self._metrics.watchers.dec()
